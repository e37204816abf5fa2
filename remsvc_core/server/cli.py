"""``remsvc-server``: run the reference server from an INI file."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from remsvc_core.errors import ServerConfigError
from remsvc_core.server.config import ServerConfig, load_config

__all__ = ["build_parser", "main"]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="remsvc-server",
        description="Run the reference RemSvc gRPC server (upstream-compatible INI configuration).",
    )
    parser.add_argument(
        "--config",
        metavar="FILE",
        help="INI file ([server], [tls], [auth], ...); "
        "without it: 127.0.0.1:50051, no TLS, no auth",
    )
    parser.add_argument(
        "--host", help="listen address, overrides [server] host (default 127.0.0.1)"
    )
    parser.add_argument(
        "--port", type=int, help="listen port, overrides [server] port (0 = any free port)"
    )
    parser.add_argument(
        "--port-file", metavar="PATH", help="write the bound port here once the server is ready"
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        config = load_config(args.config) if args.config else ServerConfig(source="<defaults>")
        overrides: dict[str, object] = {}
        if args.host is not None:
            overrides["host"] = args.host
        if args.port is not None:
            overrides["port"] = args.port
        if overrides:
            config = config.replace(**overrides)
        from remsvc_core.server.app import serve  # grpc only once the config is good

        serve(config, port_file=args.port_file)
    except ServerConfigError as exc:
        print(f"remsvc-server: configuration error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:  # pragma: no cover - SIGINT is handled by serve()
        return 130
    return 0
