"""``remsvc plugins``: what extends remsvc here, from which package, with which hooks.

One row per hook plugin (entry-point group ``remsvc.plugins``) and per result handler
(``remsvc.handlers``), both described by the one record type of
:mod:`remsvc_core.entry_points`. Without ``--all`` only what other packages install is
listed; remsvc's own built-in handlers are left out.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import asdict
from typing import Any

from remsvc_core.cli import exit_codes
from remsvc_core.cli.output import render_json, render_table, terminal_width
from remsvc_core.entry_points import EntryPointInfo

COLUMNS = ("kind", "name", "package", "version", "hooks")
_IMPL_MARKER = "remsvc_impl"  # what remsvc_core.hookspecs.hookimpl sets on a function


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "plugins",
        help="list installed hook plugins and result handlers",
        description="List the hook plugins (remsvc.plugins) and result handlers "
        "(remsvc.handlers) installed here, with package, version and the hooks each "
        "implements. REMSVC_LOAD_PLUGINS=a,b loads only those plugins; the others are "
        "listed as not loaded. Exits 1 when one cannot be loaded.",
    )
    parser.add_argument("--all", action="store_true", help="include remsvc's own built-in handlers")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    parser.set_defaults(func=execute)


def execute(args: argparse.Namespace) -> int:
    rows = [row for row in plugin_rows() + handler_rows() if args.all or not row["builtin"]]
    if args.json:
        sys.stdout.write(render_json(rows))
    else:
        table = (
            list(COLUMNS),
            [
                [
                    row["kind"],
                    row["name"],
                    row["package"],
                    row["version"],
                    _hooks_cell(row),
                ]
                for row in rows
            ],
        )
        sys.stdout.write(render_table(table, terminal_width(sys.stdout)))
    broken = [f"{row['kind']} {row['name']}" for row in rows if row["error"]]
    if broken:
        print(f"remsvc: cannot be loaded: {', '.join(broken)}", file=sys.stderr)
        return exit_codes.FAILED
    return exit_codes.OK


def _hooks_cell(row: dict[str, Any]) -> str:
    if row["error"]:
        return f"(cannot load: {row['error']})"
    if not row["loaded"]:
        return "(not loaded: not in REMSVC_LOAD_PLUGINS)"
    return ", ".join(row["hooks"]) or "-"


def _row(kind: str, info: EntryPointInfo, hooks: list[str], loaded: bool) -> dict[str, Any]:
    return {"kind": kind, **asdict(info), "hooks": hooks, "loaded": loaded}


def plugin_rows() -> list[dict[str, Any]]:
    from remsvc_core import plugins

    hooks = plugins.plugin_hooks()
    rows = [_row("plugin", info, hooks.get(info.name, []), True) for info in plugins.list_plugins()]
    rows += [_row("plugin", info, [], False) for info in plugins.skipped_plugins()]
    rows += [_row("plugin", info, [], False) for info in plugins.plugin_load_errors()]
    return sorted(rows, key=lambda row: row["name"])


def handler_rows() -> list[dict[str, Any]]:
    from remsvc_core.handlers import list_handlers, resolve_handler

    rows = []
    for info in list_handlers():
        hooks: list[str] = []
        error = info.error
        if error is None:
            try:
                pipeline = resolve_handler(info.qualified_name)
            except Exception as exc:  # listed, with why, rather than failing the listing
                error = f"{type(exc).__name__}: {exc}"
            else:
                hooks = sorted(
                    {name for hook in pipeline.result_hooks() for name in _implemented(hook)}
                )
        fields = {k: v for k, v in asdict(info).items() if k in EntryPointInfo.__annotations__}
        record = EntryPointInfo(**{**fields, "error": error})
        rows.append(_row("handler", record, hooks, True))
    return rows


def _implemented(plugin: object) -> list[str]:
    """The remsvc hooks an object implements (its methods marked with ``hookimpl``)."""
    return [
        name
        for name in dir(plugin)
        if name.startswith("remsvc_") and hasattr(getattr(plugin, name, None), _IMPL_MARKER)
    ]
