"""``remsvc run`` on several servers: one batch fanned out, results keyed by host.

``remsvc run`` comes here when it names more than one server (repeated --target or
--conn, or --targets-file) or a fan-out option. The batch, handlers and output
formats are the single-server ones; rows carry a ``host`` column, ``--follow`` and
the progress lines are prefixed with the host, and the exit status follows the whole
run's verdict (:func:`remsvc_core.fleet.judge_fleet`).
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from remsvc_core.cli import exit_codes
from remsvc_core.cli.exit_codes import UsageError
from remsvc_core.cli.fleet_targets import cli_targets
from remsvc_core.cli.inputs import load_commands
from remsvc_core.cli.output import render_json, silence_stdout, tabulate, to_jsonable
from remsvc_core.cli.report import write_table
from remsvc_core.errors import HandlerError
from remsvc_core.fleet.budget import DEFAULT_MAX_CONCURRENCY, check_host_count, fleet_limits
from remsvc_core.fleet.outcome import SUCCESS, FleetOutcome, HostRun
from remsvc_core.fleet.verdict import FleetVerdict, judge_fleet, verdict_summary
from remsvc_core.printable import printable
from remsvc_core.results import RESULT_KEYS
from remsvc_core.verdict import judge

__all__ = ["add_fleet_arguments", "execute"]

_HOST_LINES = 10
_COLUMNS = ["host", *RESULT_KEYS]


def add_fleet_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of a fan-out (they make ``remsvc run`` one even with one server)."""
    group = parser.add_argument_group(
        "many servers (several --target/--conn, or --targets-file)",
        "The same commands on every server, each over its own stream; rows get a host\n"
        "column, --follow lines a host prefix.",
    )
    group.add_argument(
        "--max-concurrency",
        metavar="N",
        help=f"servers running at once (default {DEFAULT_MAX_CONCURRENCY}); the next starts "
        "as soon as one ends",
    )
    group.add_argument(
        "--max-errors",
        metavar="N|P%",
        help="once this many servers failed (a number, or a percentage of them), start no "
        "new one; those not started are reported as such (default: start every one)",
    )
    group.add_argument(
        "--success-threshold",
        metavar="N|P%",
        help="servers that must succeed for the run to succeed (default: all of them)",
    )


def execute(args: argparse.Namespace, *, default_src: str) -> int:
    from remsvc_core.cli.run import handler_spec  # the single-server parts stay there
    from remsvc_core.handlers import resolve_handler

    if args.timeout <= 0:
        raise UsageError(f"--timeout must be positive, got {args.timeout}")
    if args.file == "-" and args.targets_file == "-":
        raise UsageError("--file - and --targets-file - cannot both read stdin; use a file")
    commands = load_commands(
        args.commands, args.file, cmdtyp=args.cmdtyp, user=args.user, src=args.src or default_src
    )
    pipeline = resolve_handler(handler_spec(args.handler))
    targets = cli_targets(args)
    options = {
        "max_concurrency": args.max_concurrency or DEFAULT_MAX_CONCURRENCY,
        "max_errors": args.max_errors,
        "success_threshold": args.success_threshold,
    }
    for name in ("max_errors", "success_threshold"):  # their form, with the option's name
        check_host_count(options[name], f"--{name.replace('_', '-')}", minimum=1)
    fleet_limits(len(targets), **options)  # every value, before anything is sent
    output_format = args.output or ("table" if sys.stdout.isatty() else "json")
    done: list[HostRun] = []
    progress = args.follow or (not args.no_progress and sys.stderr.isatty())

    def host_hooks(host: str) -> list[object]:
        hooks = pipeline.result_hooks()  # fresh checks for every host's stream
        if args.follow:
            from remsvc_core.watch import StreamWatch

            hooks.append(StreamWatch(_stderr_line, host=host, progress=False))
        return hooks

    def host_done(run: HostRun) -> None:
        done.append(run)
        if progress:
            line = _host_line(run, pipeline.accepted_rcs)
            _stderr_line(f"remsvc: [{len(done)}/{len(targets)}] {line}")

    from remsvc_core.fleet.runner import run_fleet_sync

    try:
        fleet = run_fleet_sync(
            commands,
            targets,
            **options,
            accepted_rcs=pipeline.accepted_rcs,
            stream_timeout=args.timeout,
            host_hooks=host_hooks,
            on_host_done=host_done,
            batch_key=args.batch_key,
            follow=args.follow,
            usage=args.usage,
            spill_dir=args.output_dir,
        )
    except KeyboardInterrupt:
        finished = FleetOutcome(commands=commands, hosts=list(done))
        _print_fleet(finished, judge_fleet(finished, pipeline.accepted_rcs), None, output_format)
        print(
            f"remsvc: interrupted: {len(done)} of {len(targets)} host(s) had finished; "
            "their results are above",
            file=sys.stderr,
        )
        return exit_codes.INTERRUPTED

    judged = judge_fleet(fleet, pipeline.accepted_rcs)
    value: Any = None
    names: list[str] = []
    if args.handler:
        try:
            value = pipeline.apply(fleet)
            names = list(pipeline.names)
        except HandlerError as exc:
            judged = judged.with_handler_error(str(exc))
    try:
        _print_fleet(fleet, judged, value, output_format, handler_names=names)
    except BrokenPipeError:
        silence_stdout()
    return fleet_exit_status(judged)


def fleet_exit_status(judged: FleetVerdict) -> int:
    """The exit status of a fan-out's verdict (see EXIT_STATUS_HELP)."""
    if judged.connection_failed:
        return exit_codes.CONNECTION
    return exit_codes.OK if judged.ok else exit_codes.FAILED


def _host_line(run: HostRun, accepted_rcs: frozenset[int]) -> str:
    outcome = run.outcome
    if outcome is None:
        return f"{run.host}: {run.state}"
    line = (
        f"{run.host}: {run.state}, {len(outcome.results)} of {len(outcome.commands)} "
        f"result(s) in {outcome.elapsed_s:.2f} s"
    )
    if run.state != SUCCESS:
        line += f": {verdict_summary(judge(outcome, accepted_rcs))}"
    return printable(line)


def _stderr_line(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def _print_fleet(
    fleet: FleetOutcome,
    judged: FleetVerdict,
    value: Any,
    output_format: str,
    *,
    handler_names: list[str] | None = None,
) -> None:
    """The value (or every host's raw results) on stdout, the summary on stderr."""
    if output_format == "json":
        document = fleet.to_json()
        document.update(
            ok=judged.ok,
            exit_status=fleet_exit_status(judged),
            failed_hosts=judged.failed_hosts,
            not_started=list(judged.not_started),
            problems=judged.problems(),
        )
        if handler_names:
            document["handlers"] = list(handler_names)
            document["value"] = to_jsonable(value)
        sys.stdout.write(render_json(document))
    else:
        rows = [[row[name] for name in _COLUMNS] for row in fleet.raw_results()]
        write_table(tabulate(value) if handler_names else (_COLUMNS, rows), output_format)
    sys.stdout.flush()
    for line in _summary(fleet, judged):
        # Host labels and status details reach a terminal: no escape sequences.
        print(f"remsvc: {printable(line)}", file=sys.stderr)


def _summary(fleet: FleetOutcome, judged: FleetVerdict) -> list[str]:
    head = (
        f"{judged.hosts} host(s), {len(fleet.commands)} command(s) each, in "
        f"{fleet.elapsed_s:.2f} s: {len(judged.succeeded)} succeeded ({judged.required} "
        f"needed), {len(judged.failed)} failed, {len(judged.not_started)} not started"
    )
    if judged.ok and not judged.failed:
        return [head]
    lines = [head, *judged.problems(), *judged.host_lines(_HOST_LINES)]
    if judged.connection_failed:
        lines.append(
            "no host could be reached: check the targets, that their servers run, the TLS "
            "options (--tls, --ca-cert, --client-cert) and the token"
        )
    return lines
