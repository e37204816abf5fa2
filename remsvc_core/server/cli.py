"""The server's command line, shared by ``remsvc-server`` and ``remsvc serve``.

This module owns the options both take and how they make a configuration: the INI
file (optional; without it the defaults: 127.0.0.1:50051, no TLS, no auth), then a
flag per config key that has one in :data:`~remsvc_core.server.config_keys.KEYS`
(``--host``, ``--port``, ``--tls``, ``--cert``, ...), which wins over the file, and
``--allow``/``--deny`` patterns, which add to the file's lists. These are the flags
upstream's operators know. A flag's value is read by that key's own rule, so
``--port 70000`` is refused with the message the file would get.

``--cert``, ``--key`` and ``--ca-cert`` imply ``--tls``: a certificate given on the
command line means TLS, and serving plaintext beside it would mean less than the
operator wrote (upstream then silently serves plaintext).

Only :func:`main` (``remsvc-server``) and ``remsvc_core.cli.serve`` differ: the
program name. Both print a configuration error as one line on stderr that says it
is one, and exit 2.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from typing import Any

from remsvc_core import __version__
from remsvc_core.errors import ServerConfigError
from remsvc_core.server.config import ServerConfig, load_config
from remsvc_core.server.config_keys import KEYS, ConfigKey
from remsvc_core.server.config_kinds import Boolean, OptionalPath

__all__ = [
    "DESCRIPTION",
    "EPILOG",
    "add_arguments",
    "build_parser",
    "config_from_args",
    "main",
    "report_config_error",
    "run",
]

DESCRIPTION = """\
Run the reference RemSvc gRPC server in the foreground, configured by an
upstream-style INI file ([server], [tls], [auth], [allowlist], [denylist], [log],
and our [limits] and [identity NAME]) and the options below, which win over the
file (--allow and --deny add to its lists).
"""

EPILOG = """\
The server drains on SIGTERM or Ctrl-C: it stops accepting calls, lets running
commands finish for [server] drain_grace_ms, then exits 0.

exit status:
  0  the server stopped after SIGTERM/SIGINT
  2  the configuration (file or options) is invalid; the message names file, section, key
"""

_FLAGGED = tuple(key for key in KEYS if key.flag is not None)
# Flags that name a TLS file, and so switch TLS on.
_TLS_FILE_FIELDS = ("tls_cert", "tls_key", "tls_ca")


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
        overrides = f"overrides [{key.section}] {key.name}"
        if key.field in _TLS_FILE_FIELDS:
            overrides += "; implies --tls"
        options: dict[str, Any] = {"dest": key.field, "help": f"{key.description} ({overrides})"}
        if isinstance(key.kind, Boolean):
            options.update(action="store_const", const=True)
        else:
            metavar = "FILE" if isinstance(key.kind, OptionalPath) else key.flag.split("-")[-1]
            options.update(type=_flag_value(key), metavar=metavar.upper())
        parser.add_argument(key.flag, **options)
    for flag, section in (("--allow", "allowlist"), ("--deny", "denylist")):
        parser.add_argument(
            flag,
            dest=f"cli_{section}",
            action="append",
            metavar="PATTERN",
            help=f"add a pattern to [{section}] (repeatable); it is labelled '{flag} N' "
            "in refusals and logs",
        )
    parser.add_argument(
        "--port-file",
        metavar="PATH",
        help="write the bound port to PATH once the server is ready (for scripts and tests)",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")


def config_from_args(args: argparse.Namespace) -> ServerConfig:
    """The file's configuration (or the defaults) with the given flags applied, checked."""
    overrides = {
        key.field: getattr(args, key.field)
        for key in _FLAGGED
        if getattr(args, key.field, None) is not None
    }
    if any(name in overrides for name in _TLS_FILE_FIELDS):
        overrides["tls_enabled"] = True
    if args.config:
        config = load_config(args.config, overrides=overrides)
    else:
        config = ServerConfig(source="<defaults>").replace(**overrides)
    added = {
        section: [
            (f"--{section[:-4]} {number}", pattern)
            for number, pattern in enumerate(getattr(args, f"cli_{section}", None) or [], 1)
        ]
        for section in ("allowlist", "denylist")
    }
    if not any(added.values()):
        return config
    return config.replace(
        allowlist=[*config.allowlist, *added["allowlist"]],
        denylist=[*config.denylist, *added["denylist"]],
    )


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


def report_config_error(program: str, error: ServerConfigError) -> int:
    """Print ``error`` as the one line an operator (or systemd's journal) sees; 2."""
    print(f"{program}: configuration error: {error}", file=sys.stderr)
    return 2


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``remsvc-server`` (and ``python -m remsvc_core.server``)."""
    args = build_parser().parse_args(argv)
    try:
        run(args)
    except ServerConfigError as exc:
        return report_config_error("remsvc-server", exc)
    except KeyboardInterrupt:  # pragma: no cover - SIGINT is handled by serve()
        return 130
    return 0
