"""Third-party handlers installed as real distributions (a dist-info on PYTHONPATH):
listed by ``remsvc handlers``, used by ``--handler``, and failing without losing results."""

from __future__ import annotations

import json
import subprocess
import textwrap
from collections.abc import Callable
from pathlib import Path

import pytest

RunCli = Callable[..., subprocess.CompletedProcess[str]]


@pytest.fixture
def plugin_path(tmp_path: Path) -> dict[str, str]:
    """A site directory holding the distribution ``acme-remsvc-handlers`` 0.3."""
    site = tmp_path / "site"
    site.mkdir()
    (site / "acme_handlers.py").write_text(
        textwrap.dedent(
            '''
            def outputs(results):
                """Just the stripped stdout of each command, in command order."""
                return [results[tid]["out"].strip() for tid in sorted(results, key=int)]

            def explode(results):
                """Always fails."""
                raise ValueError("boom from acme")
            '''
        ),
        encoding="utf-8",
    )
    dist = site / "acme_remsvc_handlers-0.3.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: acme-remsvc-handlers\nVersion: 0.3\n", encoding="utf-8"
    )
    (dist / "entry_points.txt").write_text(
        "[remsvc.handlers]\n"
        "outputs = acme_handlers:outputs\n"
        "explode = acme_handlers:explode\n"
        "broken = acme_missing_module:handler\n",
        encoding="utf-8",
    )
    return {"PYTHONPATH": str(site)}


def test_installed_plugin_is_listed_and_a_broken_one_is_flagged(
    run_cli: RunCli, plugin_path: dict[str, str]
) -> None:
    proc = run_cli("handlers", "-o", "json", env_extra=plugin_path)
    assert proc.returncode == 1  # "broken" cannot be imported
    handlers = {h["name"]: h for h in json.loads(proc.stdout)}
    assert handlers["outputs"]["package"] == "acme-remsvc-handlers"
    assert handlers["outputs"]["version"] == "0.3"
    assert handlers["outputs"]["description"].startswith("Just the stripped stdout")
    assert "acme_missing_module" in handlers["broken"]["error"]
    assert "broken" in proc.stderr
    assert "sorted" in handlers


def test_plugin_handler_value_in_json_table_and_csv(
    run_cli: RunCli, plugin_path: dict[str, str]
) -> None:
    args = ["run", "--handler", "outputs", "echo one", "echo two"]
    document = json.loads(run_cli(*args, "-o", "json", env_extra=plugin_path).stdout)
    assert document["value"] == ["one", "two"]
    assert document["handlers"] == ["outputs"]
    table = run_cli(*args, "-o", "table", env_extra=plugin_path)
    assert table.returncode == 0, table.stderr
    assert table.stdout.splitlines() == ["value", "one", "two"]
    assert run_cli(*args, "-o", "csv", env_extra=plugin_path).stdout == "value\none\ntwo\n"


def test_failing_handler_exits_1_and_prints_the_raw_results(
    run_cli: RunCli, plugin_path: dict[str, str]
) -> None:
    proc = run_cli("run", "--handler", "explode", "-o", "json", "echo kept", env_extra=plugin_path)
    assert proc.returncode == 1
    document = json.loads(proc.stdout)
    assert document["results"][0]["out"] == "kept\n"
    assert "value" not in document  # no shaped value: the raw results stand in
    assert any("boom from acme" in problem for problem in document["problems"])
    assert "handler failed" in proc.stderr
    assert "Traceback" not in proc.stderr
