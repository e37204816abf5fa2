"""``remsvc serve``: run the reference server in the foreground."""

from __future__ import annotations

import argparse
from typing import Any

from remsvc_core.cli import exit_codes

EPILOG = """\
The server drains on SIGTERM or Ctrl-C: it stops accepting calls, lets running
commands finish for [server] drain_grace_ms, then exits 0.

exit status:
  0  the server stopped after SIGTERM/SIGINT
  2  the configuration file is missing or invalid (the message names file, section, key)
"""


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "serve",
        help="run the reference RemSvc server in the foreground",
        description="Run the reference RemSvc server with an upstream-style INI file "
        "([server], [tls], [auth], [allowlist], [denylist], [log]).",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--config", required=True, metavar="FILE", help="the server's INI file")
    parser.add_argument("--host", metavar="HOST", help="listen on HOST instead of the file's")
    parser.add_argument(
        "--port", type=int, metavar="PORT", help="listen on PORT instead of the file's (0 = any)"
    )
    parser.add_argument(
        "--port-file",
        metavar="PATH",
        help="write the bound port to PATH once the server is ready (for scripts and tests)",
    )
    parser.set_defaults(func=execute)


def execute(args: argparse.Namespace) -> int:
    from remsvc_core.server.app import serve
    from remsvc_core.server.config import load_config

    config = load_config(args.config)
    overrides: dict[str, Any] = {}
    if args.host:
        overrides["host"] = args.host
    if args.port is not None:
        overrides["port"] = args.port
    if overrides:
        config = config.replace(**overrides)
    serve(config, port_file=args.port_file)
    return exit_codes.OK
