"""Fixtures for the handler tests: result data, temporary handler distributions."""

from __future__ import annotations

import sys
import textwrap
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from remsvc_core.handlers import refresh_handlers
from remsvc_core.hashing import command_hash

ResultFactory = Callable[..., dict[str, Any]]


def build_result(tid: int, cmd: str, rc: int = 0, out: str = "", err: str = "") -> dict[str, Any]:
    return {"tid": tid, "rc": rc, "out": out, "err": err, "hsh": command_hash(cmd), "cmd": cmd}


@pytest.fixture
def make_result() -> ResultFactory:
    """Builds a result dict shaped like the engine's, with the hash the server echoes."""
    return build_result


@pytest.fixture
def many_results() -> dict[int, dict[str, Any]]:
    """Fourteen results (tids 1..14) with mixed exit codes and some empty output,
    in a scrambled insertion order so nothing passes by accident of ordering."""
    results = {}
    for tid in (7, 14, 2, 10, 1, 13, 5, 11, 3, 9, 12, 4, 8, 6):
        rc = {4: 1, 9: 2, 13: 1}.get(tid, 0)
        out = "" if tid in (3, 12) else f"line {tid}\n"
        err = f"problem {tid}\n" if rc else ""
        results[tid] = build_result(tid, f"echo {tid}", rc, out, err)
    return results


class FakeDistributions:
    """Writes real distributions (``*.dist-info`` with ``entry_points.txt``, plus their
    modules) into a directory put on ``sys.path``, as ``pip install`` would.
    Everything is removed, and the handler registry refreshed, at teardown."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.modules: list[str] = []

    def add(
        self,
        dist: str,
        handlers: dict[str, str],
        modules: dict[str, str] | None = None,
        version: str = "0.1.0",
    ) -> None:
        info = self.root / f"{dist.replace('-', '_')}-{version}.dist-info"
        info.mkdir()
        (info / "METADATA").write_text(
            f"Metadata-Version: 2.1\nName: {dist}\nVersion: {version}\n", encoding="utf-8"
        )
        lines = "".join(f"{name} = {target}\n" for name, target in handlers.items())
        (info / "entry_points.txt").write_text(f"[remsvc.handlers]\n{lines}", encoding="utf-8")
        for module, source in (modules or {}).items():
            (self.root / f"{module}.py").write_text(textwrap.dedent(source), encoding="utf-8")
            self.modules.append(module)
        refresh_handlers()


@pytest.fixture
def fake_dists(tmp_path: Path) -> Iterator[FakeDistributions]:
    root = tmp_path / "site"
    root.mkdir()
    sys.path.insert(0, str(root))
    fakes = FakeDistributions(root)
    try:
        yield fakes
    finally:
        sys.path.remove(str(root))
        for module in fakes.modules:
            sys.modules.pop(module, None)
        refresh_handlers()


@pytest.fixture
def fresh_registry() -> Iterator[Callable[[], None]]:
    refresh_handlers()
    yield refresh_handlers
    refresh_handlers()
