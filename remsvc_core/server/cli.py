"""The server's command line, shared by ``remsvc-server`` and ``remsvc serve``.

This module owns the options both take and how they make a configuration: the INI
file (optional; without it the defaults: 127.0.0.1:50051, no TLS, no auth), then a
flag per config key that has one in :data:`~remsvc_core.server.config_keys.KEYS`
(``--host``, ``--port``, ...), which wins over the file. A flag's value is read by
that key's own rule, so ``--port 70000`` is refused with the message the file would
get. Only :func:`main` (``remsvc-server``) and ``remsvc_core.cli.serve`` differ: the
program name, and how an error is printed (both exit 2 for a configuration error).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence

from remsvc_core.errors import ServerConfigError
from remsvc_core.server.config import ServerConfig, load_config
from remsvc_core.server.config_keys import KEYS, ConfigKey

__all__ = [
    "DESCRIPTION",
    "EPILOG",
    "add_arguments",
    "build_parser",
    "config_from_args",
    "main",
    "run",
]

DESCRIPTION = """\
Run the reference RemSvc gRPC server in the foreground, configured by an
upstream-style INI file ([server], [tls], [auth], [allowlist], [denylist], [log])
and the options below, which win over the file.
"""

EPILOG = """\
The server drains on SIGTERM or Ctrl-C: it stops accepting calls, lets running
commands finish for [server] drain_grace_ms, then exits 0.

exit status:
  0  the server stopped after SIGTERM/SIGINT
  2  the configuration (file or options) is invalid; the message names file, section, key
"""

_FLAGGED = tuple(key for key in KEYS if key.flag is not None)


def _flag_value(key: ConfigKey) -> Callable[[str], object]:
    def parse(text: str) -> object:
        try:
            return key.kind.parse(text)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None

    return parse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The server's options: ``--config``, one per flagged config key, ``--port-file``."""
    parser.add_argument(
        "--config",
        metavar="FILE",
        help="the server's INI file; without it: 127.0.0.1:50051, no TLS, no auth",
    )
    for key in _FLAGGED:
        assert key.flag is not None
        parser.add_argument(
            key.flag,
            dest=key.field,
            type=_flag_value(key),
            metavar=key.flag.rsplit("-", 1)[-1].upper(),
            help=f"{key.description} (overrides [{key.section}] {key.name})",
        )
    parser.add_argument(
        "--port-file",
        metavar="PATH",
        help="write the bound port to PATH once the server is ready (for scripts and tests)",
    )


def config_from_args(args: argparse.Namespace) -> ServerConfig:
    """The file's configuration (or the defaults) with the given flags applied, checked."""
    config = load_config(args.config) if args.config else ServerConfig(source="<defaults>")
    overrides = {
        key.field: getattr(args, key.field)
        for key in _FLAGGED
        if getattr(args, key.field, None) is not None
    }
    return config.replace(**overrides) if overrides else config


def run(args: argparse.Namespace) -> None:
    """Serve with the configuration ``args`` describe, until SIGTERM or SIGINT."""
    config = config_from_args(args)
    from remsvc_core.server.app import serve  # grpc only once the config is good

    serve(config, port_file=args.port_file)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="remsvc-server",
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_arguments(parser)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``remsvc-server`` (and ``python -m remsvc_core.server``)."""
    args = build_parser().parse_args(argv)
    try:
        run(args)
    except ServerConfigError as exc:
        print(f"remsvc-server: configuration error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:  # pragma: no cover - SIGINT is handled by serve()
        return 130
    return 0
