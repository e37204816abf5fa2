"""``remsvc new-handler``: the package it makes is the one docs/plugin-authors.md
describes, and its own tests pass as its author would run them (installed into a
throw-away directory, never into this environment)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from remsvc_core.cli import main

NAME = "failures_only"


@pytest.mark.slow
def test_the_scaffolds_own_tests_pass(tmp_path: Path) -> None:
    assert main(["new-handler", NAME, "--directory", str(tmp_path)]) == 0
    project = tmp_path / "remsvc-failures-only"
    site = tmp_path / "site"
    pip = [sys.executable, "-m", "pip", "install", "--quiet", "--no-index", "--no-deps"]
    installed = subprocess.run(
        [*pip, "--no-build-isolation", "--target", str(site), str(project)],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert installed.returncode == 0, installed.stdout + installed.stderr

    tests = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider"],
        cwd=project,
        env={**os.environ, "PYTHONPATH": str(site)},
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )

    assert tests.returncode == 0, tests.stdout + tests.stderr
    assert "2 passed" in tests.stdout


def test_the_plugin_authors_guide_points_to_it() -> None:
    guide = (Path(__file__).resolve().parents[2] / "docs" / "plugin-authors.md").read_text()
    assert "remsvc new-handler" in guide
