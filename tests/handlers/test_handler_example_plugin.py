"""The example third-party package, really pip-installed into this interpreter and
then used by name, exactly as a team publishing handlers would see it."""

from __future__ import annotations

import fcntl
import importlib.metadata as metadata
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import pytest

from remsvc_core.handlers import list_handlers, refresh_handlers, resolve_handler

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "acme-remsvc-handlers"
DIST = "acme-remsvc-handlers"
PACKAGE = "acme_remsvc_handlers"


def _installed_copy_is_current() -> bool:
    try:
        dist = metadata.distribution(DIST)
    except metadata.PackageNotFoundError:
        return False
    installed = {
        Path(str(f)).name: Path(str(dist.locate_file(f)))
        for f in dist.files or []
        if str(f).startswith(f"{PACKAGE}/") and str(f).endswith(".py")
    }
    sources = sorted((EXAMPLE / "src" / PACKAGE).glob("*.py"))
    return bool(sources) and all(
        src.name in installed
        and installed[src.name].is_file()
        and installed[src.name].read_bytes() == src.read_bytes()
        for src in sources
    )


def ensure_example_installed() -> None:
    """Install the example package unless this exact source is installed already.

    Idempotent and safe against other test processes doing the same (a file lock);
    offline (--no-index, --no-deps, --no-build-isolation: hatchling is in the env).
    """
    lock_path = Path(tempfile.gettempdir()) / "remsvc-example-plugin-install.lock"
    with lock_path.open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            if not _installed_copy_is_current():
                subprocess.run(
                    [
                        sys.executable,
                        "-m",
                        "pip",
                        "install",
                        "--quiet",
                        "--no-index",
                        "--no-deps",
                        "--no-build-isolation",
                        "--force-reinstall",
                        str(EXAMPLE),
                    ],
                    check=True,
                    timeout=300,
                    capture_output=True,
                )
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)
    refresh_handlers()


@pytest.fixture(scope="module")
def example_installed() -> None:
    ensure_example_installed()


def test_installing_is_idempotent(example_installed: None) -> None:
    assert _installed_copy_is_current()
    ensure_example_installed()  # a second time: nothing to do, nothing breaks
    assert metadata.version(DIST) == "0.1.0"


def test_example_is_listed(example_installed: None) -> None:
    info = next(i for i in list_handlers() if i.name == "json_lines")
    assert info.package == DIST
    assert info.version == "0.1.0"
    assert not info.builtin
    assert info.active
    assert info.error is None
    assert info.description == "Parse each command's stdout as JSON Lines, one item per command."
    assert info.entry_point == "acme_remsvc_handlers.json_lines:json_lines"


def test_example_is_selected_by_name(example_installed: None, make_result: Any) -> None:
    raw = {
        "2": make_result(2, "report b", out='{"n": 2}\n'),
        "10": make_result(10, "report j", out='{"n": 10}\n{"n": 11}\n'),
        "1": make_result(1, "report a", out=""),
    }
    pipeline = resolve_handler(["verify_hash", "json_lines"])
    assert pipeline.names == ["verify_hash", "json_lines"]
    items = pipeline.apply(raw)
    assert [item["tid"] for item in items] == [1, 2, 10]
    assert items[2]["records"] == [{"n": 10}, {"n": 11}]
    assert len(pipeline.result_hooks()) == 2  # verify_hash's and json_lines' fail-fast hooks
    # the qualified name works too
    assert resolve_handler(f"{DIST}:json_lines").names == [f"{DIST}:json_lines"]


@pytest.mark.slow
def test_example_packages_own_tests_pass(example_installed: None) -> None:
    """The example's test suite (which uses the remsvc_server fixture) passes as a
    plugin author would run it: pytest from the package folder."""
    run = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider"],
        cwd=EXAMPLE,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert run.returncode == 0, run.stdout + run.stderr
    assert " passed" in run.stdout
