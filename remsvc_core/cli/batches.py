"""``remsvc cancel`` and ``remsvc batch``: a kept batch, by key (``batch/1``)."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from remsvc_core.cli import exit_codes
from remsvc_core.cli.exit_codes import UsageError
from remsvc_core.cli.output import render_json
from remsvc_core.cli.probe import call_probe
from remsvc_core.cli.target import add_target_arguments, server_settings

EPILOG = """\
A batch run with `remsvc run --batch-key KEY` (or by the Airflow operator) on a server
that keeps batches goes on when its client goes away. `remsvc cancel` kills its
running command and starts nothing more of it; `remsvc batch` says how it stands.
Batches belong to the identity of the token that ran them.
"""


def register(subparsers: Any) -> None:
    for name, helptext, func in (
        ("cancel", "kill a kept batch's running command; start nothing more of it", _cancel),
        ("batch", "how a kept batch stands: finished, running, cancelled...", _show),
    ):
        parser = subparsers.add_parser(
            name,
            help=helptext,
            description=helptext[0].upper() + helptext[1:] + ".",
            epilog=EPILOG + "\n" + exit_codes.EXIT_STATUS_HELP,
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        parser.add_argument("--batch-key", required=True, metavar="KEY", help="the batch's key")
        add_target_arguments(parser)
        parser.add_argument(
            "--timeout", type=float, default=10.0, metavar="SECONDS", help="per call (default 10)"
        )
        parser.add_argument("--output", "-o", choices=("text", "json"), default="text")
        parser.set_defaults(func=func)


def _cancel(args: argparse.Namespace) -> int:
    from remsvc_core.kept_batches import cancel_batch_sync

    return _call(args, cancel_batch_sync)


def _show(args: argparse.Namespace) -> int:
    from remsvc_core.kept_batches import get_batch_sync

    return _call(args, get_batch_sync)


def _call(args: argparse.Namespace, call: Any) -> int:
    from remsvc_core.extensions import check_batch_key

    check_batch_key(args.batch_key)  # a usage error before any server is reached
    if not (args.target or args.conn):
        raise UsageError(
            f"remsvc {args.subcommand} needs --target HOST:PORT or --conn URI: a batch lives "
            "on the server that ran it"
        )
    with server_settings(args) as settings:
        state = call_probe(lambda: call(settings, args.batch_key, timeout=args.timeout))
    if args.output == "json":
        sys.stdout.write(
            render_json(
                {
                    "key": state.key,
                    "state": state.state,
                    "finished_tids": list(state.finished_tids),
                    "running_tid": state.running_tid,
                }
            )
        )
    else:
        running = f", tid {state.running_tid} running" if state.running_tid else ""
        print(
            f"batch {state.key}: {state.state}; {len(state.finished_tids)} command(s) "
            f"finished{running}"
        )
    return exit_codes.OK if state.state != "unknown" else exit_codes.FAILED
