"""The example third-party package, really pip-installed into this interpreter and
then used by name, exactly as a team publishing handlers would see it."""

from __future__ import annotations

import importlib.metadata as metadata
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from remsvc_core.handlers import list_handlers, refresh_handlers, resolve_handler

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "acme-remsvc-handlers"
DIST = "acme-remsvc-handlers"
PACKAGE = "acme_remsvc_handlers"


def _installed_copy_is_current(site: Path) -> bool:
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
        and installed[src.name].is_relative_to(site)
        and installed[src.name].read_bytes() == src.read_bytes()
        for src in sources
    )


def install_example(site: Path) -> None:
    """pip-install the example into ``site``, a throw-away directory put on sys.path,
    never into this interpreter's environment (which the user keeps after the tests).
    Offline: --no-index, --no-deps, --no-build-isolation (hatchling is in the env)."""
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
            "--target",
            str(site),
            str(EXAMPLE),
        ],
        check=True,
        timeout=300,
        capture_output=True,
    )


@pytest.fixture(scope="module")
def example_installed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    site = tmp_path_factory.mktemp("example-site")
    install_example(site)
    sys.path.insert(0, str(site))
    refresh_handlers()
    try:
        yield site
    finally:
        sys.path.remove(str(site))
        for name in [m for m in sys.modules if m.split(".")[0] == PACKAGE]:
            del sys.modules[name]
        refresh_handlers()


def test_installed_into_a_throwaway_site_only(example_installed: Path) -> None:
    assert _installed_copy_is_current(example_installed)
    assert metadata.version(DIST) == "0.1.0"
    # The interpreter's own environment, without the throw-away site, has no trace of it.
    own = [p for p in sys.path if p != str(example_installed)]
    assert not list(metadata.distributions(name=DIST, path=own))


def test_example_is_listed(example_installed: Path) -> None:
    info = next(i for i in list_handlers() if i.name == "json_lines")
    assert info.package == DIST
    assert info.version == "0.1.0"
    assert not info.builtin
    assert info.active
    assert info.error is None
    assert info.description == "Parse each command's stdout as JSON Lines, one item per command."
    assert info.entry_point == "acme_remsvc_handlers.json_lines:json_lines"


def test_example_is_selected_by_name(example_installed: Path, make_result: Any) -> None:
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
def test_example_packages_own_tests_pass(example_installed: Path) -> None:
    """The example's test suite (which uses the remsvc_server fixture) passes as a
    plugin author would run it: pytest from the package folder."""
    run = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider"],
        cwd=EXAMPLE,
        capture_output=True,
        text=True,
        timeout=240,
        env={**os.environ, "PYTHONPATH": str(example_installed)},
    )
    assert run.returncode == 0, run.stdout + run.stderr
    assert " passed" in run.stdout
