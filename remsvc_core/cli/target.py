"""The options that say which server to talk to, shared by run, ping and status.

A bearer token is only ever read from a file or an environment variable: anything on
the command line is visible to every local user through ``ps``.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any
from urllib.parse import urlsplit

from remsvc_core.cli.exit_codes import UsageError
from remsvc_core.connection import settings_from_uri
from remsvc_core.secret import Secret
from remsvc_core.settings import DEFAULT_PORT, ChannelSettings, user_metadata

DEFAULT_TOKEN_ENV = "REMSVC_TOKEN"
_TOKEN_HINT = "use --token-file PATH or --token-env VAR instead (a command line is visible in ps)"


def add_target_arguments(parser: argparse.ArgumentParser) -> None:
    """Add --target/--conn, TLS, token and metadata options to ``parser``."""
    group = parser.add_argument_group(
        "server",
        "Where to run. With neither --target nor --conn, remsvc starts its reference\n"
        "server in-process on a loopback port and uses that.",
    )
    where = group.add_mutually_exclusive_group()
    where.add_argument("--target", metavar="HOST:PORT", help="a RemSvc server (default port 50051)")
    where.add_argument(
        "--conn",
        metavar="URI",
        help="an Airflow connection URI, e.g. remsvc://host:50051?use_ssl=true "
        "(its extras as query parameters; never bearer_token)",
    )
    group.add_argument("--tls", action="store_true", help="use TLS (implied by the options below)")
    group.add_argument("--ca-cert", metavar="PATH", help="CA bundle to verify the server with")
    group.add_argument("--client-cert", metavar="PATH", help="client certificate for mutual TLS")
    group.add_argument("--client-key", metavar="PATH", help="client private key for mutual TLS")
    group.add_argument(
        "--tls-server-name", metavar="NAME", help="name to verify in the server certificate"
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
        "--max-receive-mb",
        metavar="MIB",
        type=int,
        help="largest single result to accept, in MiB (default 64; raise it for servers "
        "whose output_cap_bytes is higher)",
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
    if args.target or args.conn:
        return False
    remote_only = {
        "--tls": args.tls,
        "--ca-cert": args.ca_cert,
        "--client-cert": args.client_cert,
        "--client-key": args.client_key,
        "--tls-server-name": args.tls_server_name,
        "--token-file": args.token_file,
        "--token-env": args.token_env,
    }
    given = [name for name, value in remote_only.items() if value]
    if given:
        verb = "needs" if len(given) == 1 else "need"
        raise UsageError(
            f"{', '.join(given)} {verb} a server: add --target HOST:PORT or --conn URI "
            "(without them remsvc runs on an in-process server, which has no TLS or token)"
        )
    return True


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
    from remsvc_core.server.embedded import EmbeddedServer

    with EmbeddedServer(**embedded_config) as server:
        yield server.settings(metadata=metadata)


def settings_from_args(args: argparse.Namespace) -> ChannelSettings:
    """ChannelSettings for --target or --conn plus the TLS, token and metadata options."""
    metadata = parse_metadata(args.metadata)
    token = read_token(args)
    if args.conn:
        base = settings_from_uri(args.conn)
        if base.bearer_token:
            raise UsageError(f"the --conn URI contains bearer_token; remove it and {_TOKEN_HINT}")
        settings = dataclasses.replace(base, bearer_token=token, metadata=metadata)
    else:
        settings = ChannelSettings(
            target=_with_port(args.target), bearer_token=token, metadata=metadata
        )
    settings = _apply_tls_options(settings, args)
    if args.max_receive_mb is not None:
        if not 1 <= args.max_receive_mb <= 2047:
            raise UsageError("--max-receive-mb must be from 1 to 2047")
        settings = dataclasses.replace(settings, max_receive_bytes=args.max_receive_mb << 20)
    return settings


def _apply_tls_options(settings: ChannelSettings, args: argparse.Namespace) -> ChannelSettings:
    # Options given on the command line win over the --conn URI; any TLS file or name
    # implies TLS, since it means nothing on a plaintext channel.
    overrides: dict[str, object] = {}
    for field, value in (
        ("ca_cert_path", args.ca_cert),
        ("client_cert_path", args.client_cert),
        ("client_key_path", args.client_key),
        ("tls_server_name", args.tls_server_name),
    ):
        if value:
            overrides[field] = value
    if args.tls or overrides:
        overrides["use_tls"] = True
    return dataclasses.replace(settings, **overrides) if overrides else settings  # type: ignore[arg-type]


def _with_port(target: str) -> str:
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
