"""``remsvc handlers``: what result handlers are installed, from which package."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from remsvc_core.cli import exit_codes
from remsvc_core.cli.output import FORMATS, render_csv, render_json, render_table, terminal_width

COLUMNS = ("name", "package", "version", "description")


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "handlers",
        help="list the installed result handlers",
        description="List every result handler installed in this environment (entry-point "
        "group remsvc.handlers): the names --handler and a DAG's result_handler accept. "
        "Exits 1 when an installed handler cannot be loaded (it is listed with the error).",
    )
    parser.add_argument(
        "--output", "-o", choices=FORMATS, default="table", help="table (default), json or csv"
    )
    parser.set_defaults(func=execute)


def execute(args: argparse.Namespace) -> int:
    from remsvc_core.handlers import list_handlers

    infos = list_handlers()
    if args.output == "json":
        sys.stdout.write(
            render_json(
                [
                    {
                        "name": info.name,
                        "qualified_name": info.qualified_name,
                        "package": info.package,
                        "version": info.version,
                        "description": info.description,
                        "entry_point": info.entry_point,
                        "active": info.active,
                        "error": info.error,
                    }
                    for info in infos
                ]
            )
        )
    else:
        # A name shared by several packages: the losers are shown as PACKAGE:NAME,
        # which is exactly how --handler selects them.
        rows = [
            [
                info.name if info.active else info.qualified_name,
                info.package,
                info.version,
                info.description or (f"(cannot load: {info.error})" if info.error else ""),
            ]
            for info in infos
        ]
        table = (list(COLUMNS), rows)
        if args.output == "csv":
            sys.stdout.write(render_csv(table))
        else:
            sys.stdout.write(render_table(table, terminal_width(sys.stdout)))
    broken = [info.qualified_name for info in infos if info.error]
    if broken:
        print(f"remsvc: handler(s) that cannot be loaded: {', '.join(broken)}", file=sys.stderr)
        return exit_codes.FAILED
    return exit_codes.OK
