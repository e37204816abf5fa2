"""``remsvc serve``: the reference server in the foreground, as ``remsvc-server`` runs it.

The options and the way they make a configuration are ``remsvc-server``'s own
(:mod:`remsvc_core.server.cli`), and so is the way a configuration error is printed
(one line on stderr that says it is one) and its exit status, 2.
"""

from __future__ import annotations

import argparse
from typing import Any

from remsvc_core.cli import exit_codes
from remsvc_core.errors import ServerConfigError
from remsvc_core.server import cli as server_cli


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "serve",
        help="run the reference RemSvc server in the foreground",
        description=server_cli.DESCRIPTION,
        epilog=server_cli.EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    server_cli.add_arguments(parser)
    parser.set_defaults(func=execute)


def execute(args: argparse.Namespace) -> int:
    try:
        server_cli.run(args)
    except ServerConfigError as exc:
        return server_cli.report_config_error("remsvc serve", exc)
    return exit_codes.OK
