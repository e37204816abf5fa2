"""``remsvc run``: run commands and print every result that came back."""

from __future__ import annotations

import argparse
import json
import sys
import threading
from collections.abc import Sequence
from typing import Any

from remsvc_core.cli import exit_codes, fleet
from remsvc_core.cli.exit_codes import UsageError
from remsvc_core.cli.fleet_targets import wants_fleet
from remsvc_core.cli.inputs import load_commands, parse_cmdtyp
from remsvc_core.cli.output import FORMATS, silence_stdout
from remsvc_core.cli.report import exit_status, judge, print_outcome
from remsvc_core.cli.target import add_target_arguments, server_settings
from remsvc_core.commands import Command
from remsvc_core.errors import HandlerError
from remsvc_core.hookspecs import hookimpl
from remsvc_core.results import CommandResult, StreamOutcome
from remsvc_core.settings import ChannelSettings

DEFAULT_SRC = "remsvc-cli"
# What the client takes by default (64 MiB per response, stdout and stderr together).
MAX_OUTPUT_CAP = 30 * 1024 * 1024
_EMBEDDED_SLACK_S = 5.0
_EXAMPLE_OPTIONS = '{"accept": [0, 1]}'

DESCRIPTION = """\
Run commands on a RemSvc server over one stream and print every result, in command
order; or on many servers at once (repeat --target, or --targets-file), results keyed
by host. With no --target or --conn, a reference server is started in-process on a
loopback port, so `remsvc run "echo hello"` works with nothing set up; there each
command may run for up to --timeout seconds.
"""

EPILOG = f"""\
commands:
  Give them as arguments, or with --file FILE (- for stdin): one command per line
  (blank lines and lines starting with # are skipped), or, when the content starts
  with '[', a JSON list of strings or of {{"cmd", "cmdtyp", "cmdusr", "src"}} objects.
  --cmdtyp, --user and --src apply to every command that does not set its own.

handlers:
  --handler NAME shapes the results with an installed handler (see `remsvc handlers`;
  PACKAGE:NAME picks one package's handler when several share a name). Repeat it to
  build a pipeline, applied left to right. --handler-options JSON right after a
  --handler gives that handler its options:
    --handler rc_filter --handler-options '{{"accept": [0, 1]}}' --handler dataframe
  A handler may accept exit codes other than 0, which then count as success.

output:
  table  tid, rc and the first line of out and err, fitted to the terminal
  json   the whole outcome: results, missing_tids, status, and the handler's value
  csv    one row per result (or per row of the handler's value), full text
  The default is table when stdout is a terminal and json when it is not. A summary
  line goes to stderr; a progress bar too, when stderr is a terminal.

{exit_codes.EXIT_STATUS_HELP}
examples:
  remsvc run "echo hello" "uname -a"
  remsvc run --target db1:50051 --tls --ca-cert ca.pem --token-file ~/.remsvc-token "df -h"
  printf 'hostname\\nuptime\\n' | remsvc run --file - --output csv
  remsvc run --handler dataframe --output csv "echo a" "echo b"
  remsvc run --targets-file hosts.txt --max-concurrency 20 --max-errors 5% "uname -r"
"""


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "run",
        help="run commands and print their results",
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("commands", nargs="*", metavar="CMD", help="a command line to run")
    source = parser.add_argument_group("input")
    source.add_argument("--file", "-f", metavar="FILE", help="read commands from FILE (- = stdin)")
    source.add_argument(
        "--cmdtyp",
        type=parse_cmdtyp,
        metavar="TYPE",
        help="0 or shell (default), 1 or powershell",
    )
    source.add_argument("--user", metavar="USER", help="run the commands as this OS user")
    source.add_argument(
        "--src", metavar="LABEL", help=f"source label in the server's log (default {DEFAULT_SRC})"
    )
    add_target_arguments(parser, many=True)
    fleet.add_fleet_arguments(parser)
    shaping = parser.add_argument_group("results")
    shaping.add_argument(
        "--handler",
        action=_HandlerAction,
        dest="handler",
        default=[],
        metavar="NAME",
        help="shape results with this installed handler; repeat for a pipeline",
    )
    shaping.add_argument(
        "--handler-options",
        action=_HandlerOptionsAction,
        dest="handler",
        metavar="JSON",
        help="options (a JSON object) for the --handler just before it",
    )
    shaping.add_argument(
        "--output",
        "-o",
        choices=FORMATS,
        help="table, json or csv (default: table on a terminal, json otherwise)",
    )
    shaping.add_argument(
        "--timeout",
        type=float,
        default=3600.0,
        metavar="SECONDS",
        help="give up on the stream after this long (default 3600)",
    )
    shaping.add_argument(
        "--no-progress", action="store_true", help="no progress bar, even on a terminal"
    )
    durable = parser.add_argument_group(
        "durability and live output (servers that grant them: the reference server)"
    )
    durable.add_argument(
        "--batch-key",
        metavar="KEY",
        help="name the batch so the server keeps it if this run dies: running the same "
        "command with the same key re-attaches (finished commands are not run again); "
        "`remsvc cancel --batch-key KEY` kills it",
    )
    durable.add_argument(
        "--follow",
        action="store_true",
        help="print each command's output on stderr as it is printed, prefixed with its tid",
    )
    durable.add_argument(
        "--output-dir",
        metavar="DIR",
        help="keep outputs larger than 8 MiB in files in DIR instead of memory (the "
        "result names the file and its SHA-256)",
    )
    durable.add_argument(
        "--usage", action="store_true", help="ask what each command cost (CPU, memory, time)"
    )
    parser.add_argument(
        "--output-cap-bytes",
        type=int,
        metavar="BYTES",
        help="the in-process server's cap on each command's stdout and stderr (default "
        "262144, as upstream); past it the output is cut and flagged",
    )
    parser.set_defaults(func=execute)


class _HandlerAction(argparse.Action):
    """--handler NAME: append a pipeline step."""

    def __call__(self, parser: Any, namespace: Any, values: Any, option: Any = None) -> None:
        name = str(values).strip()
        if not name:
            raise argparse.ArgumentError(self, "needs a handler name, e.g. --handler dataframe")
        steps = list(getattr(namespace, self.dest, None) or [])
        steps.append({"name": name})
        setattr(namespace, self.dest, steps)


class _HandlerOptionsAction(argparse.Action):
    """--handler-options JSON: options for the --handler just before it."""

    def __call__(self, parser: Any, namespace: Any, values: Any, option: Any = None) -> None:
        steps = list(getattr(namespace, self.dest, None) or [])
        if not steps or "options" in steps[-1]:
            raise argparse.ArgumentError(
                self, "must follow the --handler it configures, once per handler"
            )
        try:
            options = json.loads(values)
        except json.JSONDecodeError as exc:
            raise argparse.ArgumentError(
                self,
                f"for {steps[-1]['name']} is not valid JSON ({exc.msg}); "
                f"write a JSON object, e.g. '{_EXAMPLE_OPTIONS}'",
            ) from None
        if not isinstance(options, dict):
            raise argparse.ArgumentError(
                self, f"for {steps[-1]['name']} must be a JSON object, e.g. '{_EXAMPLE_OPTIONS}'"
            )
        steps[-1] = {**steps[-1], "options": options}
        setattr(namespace, self.dest, steps)


def handler_spec(steps: Sequence[dict[str, Any]]) -> list[Any] | None:
    """The steps collected from --handler/--handler-options as a resolve_handler spec."""
    if not steps:
        return None
    return [step if step.get("options") else step["name"] for step in steps]


def execute(args: argparse.Namespace) -> int:
    from remsvc_core.handlers import resolve_handler

    if wants_fleet(args):
        return fleet.execute(args, default_src=DEFAULT_SRC)
    if args.timeout <= 0:
        raise UsageError(f"--timeout must be positive, got {args.timeout}")
    embedded = embedded_config(args)
    commands = load_commands(
        args.commands,
        args.file,
        cmdtyp=args.cmdtyp,
        user=args.user,
        src=args.src or DEFAULT_SRC,
    )
    pipeline = resolve_handler(handler_spec(args.handler))
    collector = ResultCollector()
    hooks: list[object] = [collector, *pipeline.result_hooks()]
    if args.follow:
        from remsvc_core.watch import StreamWatch

        hooks.append(StreamWatch(_stderr_line, progress=False))
    elif not args.no_progress and sys.stderr.isatty():
        from remsvc_core.cli.progress import ProgressBar

        progress = ProgressBar(
            len(commands), sys.stderr, commands=commands, is_success=pipeline.is_success
        )
        hooks.append(progress)
    options = {
        "batch_key": args.batch_key,
        "follow": args.follow,
        "usage": args.usage,
        "spill_dir": args.output_dir,
    }
    output_format = args.output or ("table" if sys.stdout.isatty() else "json")

    try:
        with server_settings(args, **embedded) as channel:
            outcome = _run(commands, channel, args.timeout, hooks, options)
    except KeyboardInterrupt:
        for hook in hooks:
            stop = getattr(hook, "stop", None)
            if callable(stop):
                stop()
        if args.batch_key:
            print(
                f"remsvc: batch {args.batch_key!r} goes on on a server that keeps batches: run "
                "the same command again to re-attach, or `remsvc cancel --batch-key "
                f"{args.batch_key}` to kill it",
                file=sys.stderr,
            )
        # Whatever arrived before Ctrl-C is still worth printing.
        outcome = StreamOutcome(
            commands=commands,
            results=collector.snapshot(),
            status_code="CANCELLED",
            status_details="interrupted by the user",
        )
        print_outcome(outcome, judge(outcome, pipeline), None, output_format, handler_names=[])
        return exit_codes.INTERRUPTED

    verdict = judge(outcome, pipeline)
    value: Any = None
    if args.handler:
        try:
            value = pipeline.apply(outcome)  # the pipeline builds its rows from the outcome once
        except HandlerError as exc:
            verdict = verdict.with_handler_error(str(exc))
    try:
        print_outcome(
            outcome,
            verdict,
            value,
            output_format,
            handler_names=list(pipeline.names)
            if args.handler and verdict.handler_error is None
            else [],
        )
    except BrokenPipeError:
        # `remsvc run ... | head`: the reader left early; the verdict still stands.
        silence_stdout()
    return exit_status(verdict)


def embedded_config(args: argparse.Namespace) -> dict[str, Any]:
    """ServerConfig overrides for the in-process server (refused for a real one)."""
    # On the in-process server a command may run as long as the stream may (the
    # server's 30 s default suits remote hosts, not a local `remsvc run "make"`);
    # a little longer, so that --timeout is the one limit the user ever meets.
    config: dict[str, Any] = {"cmd_timeout_ms": round((args.timeout + _EMBEDDED_SLACK_S) * 1000)}
    cap = args.output_cap_bytes
    if cap is None:
        return config
    if args.target or args.conn:
        raise UsageError(
            "--output-cap-bytes sets the in-process server's cap; a real server's is its "
            "output_cap_bytes setting (and --max-receive-mb lets the client take more)"
        )
    if not 1 <= cap <= MAX_OUTPUT_CAP:
        raise UsageError(f"--output-cap-bytes must be 1 to {MAX_OUTPUT_CAP}, got {cap}")
    config["output_cap_bytes"] = cap
    return config


def _run(
    commands: list[Command],
    settings: ChannelSettings,
    timeout: float,
    hooks: list[object],
    options: dict[str, Any],
) -> StreamOutcome:
    from remsvc_core.engine import run_commands_sync

    return run_commands_sync(commands, settings, stream_timeout=timeout, hooks=hooks, **options)


def _stderr_line(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


class ResultCollector:
    """Keeps each result as it arrives, so Ctrl-C cannot lose the ones already in."""

    def __init__(self) -> None:
        self._results: dict[int, CommandResult] = {}
        self._lock = threading.Lock()

    @hookimpl
    def remsvc_result(self, result: CommandResult) -> None:
        with self._lock:
            self._results.setdefault(result.tid, result)

    def snapshot(self) -> dict[int, CommandResult]:
        with self._lock:
            return dict(self._results)
