"""``remsvc status``: the server's own health message."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from remsvc_core.cli import exit_codes
from remsvc_core.cli.exit_codes import UsageError
from remsvc_core.cli.output import render_json
from remsvc_core.cli.probe import call_probe
from remsvc_core.cli.target import add_target_arguments, embedded_notice, server_settings
from remsvc_core.printable import printable


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "status",
        help="print the server's status message",
        description="Ask a RemSvc server for its status (GetStatus) and print its message, "
        "e.g. 'state=OK uptime=42s commands=7'. Exits 1 when the server reports rc != 0.",
        epilog=exit_codes.EXIT_STATUS_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_target_arguments(parser)
    parser.add_argument(
        "--timeout", type=float, default=10.0, metavar="SECONDS", help="per call (default 10)"
    )
    parser.add_argument("--output", "-o", choices=("text", "json"), default="text")
    parser.set_defaults(func=execute)


def execute(args: argparse.Namespace) -> int:
    if args.timeout <= 0:
        raise UsageError(f"--timeout must be positive, got {args.timeout}")
    with server_settings(args) as settings:
        from remsvc_core.probes import get_status_sync

        reply = call_probe(lambda: get_status_sync(settings, timeout=args.timeout))
    rc, message = int(reply.rc), str(reply.msg)
    if args.output == "json":
        sys.stdout.write(render_json({"target": settings.target, "rc": rc, "msg": message}))
    else:
        print(printable(message))  # the server's words: no escape sequences on the terminal
    embedded_notice(args)
    return exit_codes.OK if rc == 0 else exit_codes.FAILED
