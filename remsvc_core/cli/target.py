"""The options that say which server to talk to, shared by run, ping and status.

A bearer token is only ever read from a file or an environment variable: anything on
the command line is visible to every local user through ``ps``.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any
from urllib.parse import urlsplit

from remsvc_core.cli.exit_codes import UsageError
from remsvc_core.connection import settings_from_uri
from remsvc_core.secret import Secret
from remsvc_core.settings import (
    CONNECTION_EXTRAS,
    DEFAULT_PORT,
    ChannelSettings,
    ConnectionExtra,
    user_metadata,
)

DEFAULT_TOKEN_ENV = "REMSVC_TOKEN"
_TOKEN_HINT = "use --token-file PATH or --token-env VAR instead (a command line is visible in ps)"
# The connection extras that have an option (never the token: ps shows command lines).
_OPTIONS = tuple(extra for extra in CONNECTION_EXTRAS if extra.flag)


def add_target_arguments(parser: argparse.ArgumentParser, *, many: bool = False) -> None:
    """Add --target/--conn, TLS, token and metadata options to ``parser``.

    ``many``: --target (or --conn) may be repeated and --targets-file is offered (a
    fan-out over several servers, ``remsvc run``); each then holds a list.
    """
    group = parser.add_argument_group(
        "server",
        "Where to run. With neither --target nor --conn, remsvc starts its reference\n"
        "server in-process on a loopback port and uses that.",
    )
    where = group.add_mutually_exclusive_group()
    repeat, action = ("; repeat it to run on several servers", "append") if many else ("", "store")
    where.add_argument(
        "--target",
        metavar="HOST:PORT",
        action=action,
        help=f"a RemSvc server (default port 50051){repeat}",
    )
    where.add_argument(
        "--conn",
        metavar="URI",
        action=action,
        help="an Airflow connection URI, e.g. remsvc://host:50051?use_ssl=true "
        f"(its extras as query parameters; never bearer_token){repeat}",
    )
    if many:
        group.add_argument(
            "--targets-file",
            metavar="FILE",
            help="run on every server listed in FILE (- = stdin): one [LABEL=]HOST:PORT or "
            "[LABEL=]remsvc:// URI per line",
        )
    for extra in _OPTIONS:
        if extra.kind == "boolean":
            group.add_argument(
                extra.flag, dest=extra.name, action="store_true", help=extra.flag_help
            )
        else:
            group.add_argument(
                extra.flag, dest=extra.name, metavar=extra.metavar, help=extra.flag_help
            )
    token = group.add_mutually_exclusive_group()
    token.add_argument("--token-file", metavar="PATH", help="read the bearer token from PATH")
    token.add_argument(
        "--token-env",
        metavar="VAR",
        help=f"read the bearer token from environment variable VAR "
        f"(default: {DEFAULT_TOKEN_ENV}, when it is set)",
    )
    group.add_argument(
        "--metadata",
        metavar="KEY=VALUE",
        action="append",
        default=[],
        help="gRPC metadata sent with every call (repeatable)",
    )


def wants_embedded(args: argparse.Namespace) -> bool:
    """True when no server was named: run on an in-process reference server."""
    if args.target or args.conn or getattr(args, "targets_file", None):
        return False
    remote_only = {
        extra.flag: getattr(args, extra.name) for extra in _OPTIONS if _asks_for_tls(extra)
    }
    remote_only["--token-file"] = args.token_file
    remote_only["--token-env"] = args.token_env
    given = [name for name, value in remote_only.items() if value]
    if given:
        verb = "needs" if len(given) == 1 else "need"
        raise UsageError(
            f"{', '.join(given)} {verb} a server: add --target HOST:PORT or --conn URI "
            "(without them remsvc runs on an in-process server, which has no TLS or token)"
        )
    return True


def embedded_notice(args: argparse.Namespace) -> None:
    """Say on stderr that the answer came from the in-process server, when it did: a
    check of this install, not of any server of the user's."""
    if wants_embedded(args):
        print(
            "remsvc: no --target or --conn given: that was an in-process reference server "
            "(an install check), not a server of yours",
            file=sys.stderr,
        )


def parse_metadata(items: Sequence[str]) -> tuple[tuple[str, str], ...]:
    """``["k=v", ...]`` to pairs; refuses ``authorization`` so no token lands in ``ps``."""
    pairs = []
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise UsageError(f"--metadata {item!r} is not KEY=VALUE, e.g. --metadata team=ops")
        pairs.append((key.strip(), value))
    return user_metadata(
        pairs, why="--metadata is visible to every local user in ps", fix=_TOKEN_HINT.capitalize()
    )


def read_token(args: argparse.Namespace) -> Secret | None:
    """The bearer token from --token-file, --token-env, or $REMSVC_TOKEN; else None."""
    if args.token_file:
        try:
            with open(args.token_file, encoding="utf-8") as handle:
                text = handle.read().strip()
        except OSError as exc:
            raise UsageError(
                f"cannot read --token-file {args.token_file!r}: {exc.strerror}; "
                "give a readable file holding the token"
            ) from None
        if not text:
            raise UsageError(f"--token-file {args.token_file!r} is empty; put the token in it")
        return Secret(text)
    if args.token_env:
        value = os.environ.get(args.token_env, "").strip()
        if not value:
            raise UsageError(
                f"--token-env {args.token_env}: that environment variable is not set or empty; "
                f"export {args.token_env}=<token> first"
            )
        return Secret(value)
    value = os.environ.get(DEFAULT_TOKEN_ENV, "").strip()
    return Secret(value) if value else None


@contextmanager
def server_settings(args: argparse.Namespace, **embedded_config: Any) -> Iterator[ChannelSettings]:
    """Settings for the server the options name, or for an in-process one started here
    (with ``embedded_config`` as ServerConfig overrides).

    Every option is checked before the embedded server starts, so a usage error never
    has to wait for (or clean up) a server.
    """
    if not wants_embedded(args):
        yield settings_from_args(args)
        return
    metadata = parse_metadata(args.metadata)
    options = option_values(args)  # wants_embedded() refused the TLS ones
    from remsvc_core.server.embedded import EmbeddedServer

    with EmbeddedServer(**embedded_config) as server:
        yield server.settings(metadata=metadata, **options)


def settings_from_args(args: argparse.Namespace) -> ChannelSettings:
    """ChannelSettings for --target or --conn plus the TLS, token and metadata options.

    Options given on the command line win over the --conn URI's extras.
    """
    target, conn = _only(args.target), _only(args.conn)
    base = conn_settings(conn) if conn else ChannelSettings(target=with_default_port(target))
    return with_options(base, args)


def conn_settings(uri: str, where: str = "the --conn URI") -> ChannelSettings:
    """Settings from a connection URI that must not hold a token (ps shows it)."""
    base = settings_from_uri(uri)
    if base.bearer_token:
        raise UsageError(f"{where} contains bearer_token; remove it and {_TOKEN_HINT}")
    return base


def with_options(base: ChannelSettings, args: argparse.Namespace) -> ChannelSettings:
    """``base`` with the TLS, token and metadata options of the command line."""
    return dataclasses.replace(base, **option_overrides(args))


def option_overrides(args: argparse.Namespace) -> dict[str, Any]:
    """The ChannelSettings fields the TLS, token and metadata options set (read once,
    to apply to every server of a fan-out)."""
    metadata = parse_metadata(args.metadata)
    token = read_token(args)
    return {"bearer_token": token, "metadata": metadata, **option_values(args)}


def _only(value: Any) -> Any:
    """The one value of an option that may be repeated (``add_target_arguments(many=True)``)."""
    if isinstance(value, list):
        return value[0] if value else None
    return value


def option_values(args: argparse.Namespace) -> dict[str, Any]:
    """ChannelSettings field values of the connection-extra options that were given.

    Any TLS file or name implies TLS, since it means nothing on a plaintext channel.
    """
    values: dict[str, Any] = {}
    for extra in _OPTIONS:
        value = getattr(args, extra.name)
        if value:  # not given (None), or a flag left off (False), or an empty string
            values[extra.field] = extra.parse(value, extra.flag)
            if extra.implies_tls:
                values["use_tls"] = True
    return values


def _asks_for_tls(extra: ConnectionExtra) -> bool:
    return extra.implies_tls or extra.field == "use_tls"


def with_default_port(target: str) -> str:
    """Add the default port to a bare host, since gRPC would otherwise pick 443."""
    if target.count(":") > 1 and not target.startswith("["):
        raise UsageError(f"--target {target!r}: put an IPv6 address in brackets, e.g. [::1]:50051")
    try:
        port = urlsplit(f"//{target}").port
    except ValueError:
        raise UsageError(
            f"--target {target!r} has an invalid port; write HOST:PORT, e.g. 127.0.0.1:50051"
        ) from None
    if port is None and not target.endswith(":"):
        return f"{target}:{DEFAULT_PORT}"
    return target
