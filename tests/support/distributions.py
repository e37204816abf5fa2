"""Installed distributions made by hand, for tests that need a package "installed".

A site directory holding modules and a ``.dist-info`` with ``METADATA`` and
``entry_points.txt`` is what pip leaves behind; put on ``PYTHONPATH`` (or
``sys.path``), ``importlib.metadata`` finds it like any installed package, and
nothing is installed into the environment running the tests.
"""

from __future__ import annotations

import textwrap
from collections.abc import Mapping
from pathlib import Path


def installed_distribution(
    site: Path, name: str, version: str, modules: Mapping[str, str], entry_points: str
) -> dict[str, str]:
    """Lay out a distribution the way pip installs one (modules, a dist-info with
    METADATA and entry_points.txt) in ``site``; the environment that puts it on the
    path of a CLI subprocess."""
    site.mkdir(parents=True, exist_ok=True)
    for module, source in modules.items():
        (site / f"{module}.py").write_text(textwrap.dedent(source), encoding="utf-8")
    dist = site / f"{name.replace('-', '_')}-{version}.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text(
        f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n", encoding="utf-8"
    )
    (dist / "entry_points.txt").write_text(entry_points, encoding="utf-8")
    return {"PYTHONPATH": str(site)}
