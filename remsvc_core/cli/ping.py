"""``remsvc ping``: is the server there, and how long does a round trip take?"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from remsvc_core.cli import exit_codes
from remsvc_core.cli.exit_codes import UsageError
from remsvc_core.cli.output import render_json
from remsvc_core.cli.probe import call_probe
from remsvc_core.cli.target import add_target_arguments, embedded_notice, server_settings


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "ping",
        help="check that a server answers, and the round-trip latency",
        description="Send Ping to a RemSvc server and print the round-trip latency. With no "
        "--target or --conn it pings an in-process reference server (an install check).",
        epilog=exit_codes.EXIT_STATUS_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_target_arguments(parser)
    parser.add_argument(
        "--count", "-c", type=int, default=1, metavar="N", help="pings to send (default 1)"
    )
    parser.add_argument(
        "--timeout", type=float, default=10.0, metavar="SECONDS", help="per call (default 10)"
    )
    parser.add_argument("--output", "-o", choices=("text", "json"), default="text")
    parser.set_defaults(func=execute)


def execute(args: argparse.Namespace) -> int:
    if not 1 <= args.count <= 1000:
        raise UsageError(f"--count must be 1 to 1000, got {args.count}")
    if args.timeout <= 0:
        raise UsageError(f"--timeout must be positive, got {args.timeout}")
    latencies = []
    with server_settings(args) as settings:
        from remsvc_core.probes import ping_sync

        for _ in range(args.count):
            reply = call_probe(lambda: ping_sync(settings, timeout=args.timeout))
            latencies.append(reply.latency_s)
    if args.output == "json":
        sys.stdout.write(
            render_json({"target": settings.target, "latencies_ms": [s * 1000 for s in latencies]})
        )
    else:
        for seq, latency in enumerate(latencies, start=1):
            print(f"pong from {settings.target}: seq={seq} time={latency * 1000:.2f} ms")
    embedded_notice(args)
    return exit_codes.OK
