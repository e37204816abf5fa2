"""Judging a finished stream and printing it: the verdict, the value, the summary line.

The order follows the contract every front end keeps: the success check runs on all
raw results (with the pipeline's accepted exit codes), then the pipeline shapes them,
then the value is printed, and only then does a failure set the exit status.
"""

from __future__ import annotations

import dataclasses
import sys
from collections.abc import Sequence
from typing import Any, Protocol

from remsvc_core.cli import exit_codes
from remsvc_core.cli.output import (
    render_csv,
    render_json,
    render_table,
    result_view,
    tabulate,
    terminal_width,
    to_jsonable,
)
from remsvc_core.results import OK, RESULT_KEYS, StreamOutcome

# Statuses that mean we never got to talk to the server properly, not that a command failed.
CONNECTION_STATUSES = frozenset({"UNAVAILABLE", "UNAUTHENTICATED"})


class SuccessCheck(Protocol):
    def is_success(self, result: Any) -> bool: ...


@dataclasses.dataclass(frozen=True)
class Verdict:
    """Did the run succeed, and if not, why (one line per problem)."""

    failed_tids: tuple[int, ...] = ()
    problems: tuple[str, ...] = ()
    connection_failed: bool = False
    handler_failed: bool = False

    @property
    def ok(self) -> bool:
        return not self.problems

    @property
    def exit_status(self) -> int:
        if self.connection_failed:
            return exit_codes.CONNECTION
        return exit_codes.OK if self.ok else exit_codes.FAILED

    def with_problem(self, problem: str) -> Verdict:
        return dataclasses.replace(self, problems=(*self.problems, problem), handler_failed=True)


def judge(outcome: StreamOutcome, pipeline: SuccessCheck) -> Verdict:
    """The success check on every raw result, the missing tids and the stream status."""
    raw = outcome.raw_results()
    failed = tuple(tid for tid, result in raw.items() if not pipeline.is_success(result))
    problems = []
    if failed:
        listed = ", ".join(f"tid {tid} (rc {raw[tid]['rc']})" for tid in failed[:10])
        more = f" and {len(failed) - 10} more" if len(failed) > 10 else ""
        problems.append(
            f"{len(failed)} of {len(outcome.commands)} command(s) failed: {listed}{more}"
        )
    connection_failed = outcome.status_code in CONNECTION_STATUSES
    if outcome.status_code != OK or outcome.missing_tids:
        problems.append(outcome.describe_failure())
        if connection_failed:
            problems.append(_connection_hint(outcome))
    return Verdict(
        failed_tids=failed, problems=tuple(problems), connection_failed=connection_failed
    )


def _connection_hint(outcome: StreamOutcome) -> str:
    if outcome.status_code == "UNAUTHENTICATED":
        return "the server refused the token: check --token-file/--token-env (or $REMSVC_TOKEN)"
    return (
        f"could not talk to {outcome.target or 'the server'}: check --target/--conn, that the "
        "server is running, and the TLS options (--tls, --ca-cert, --client-cert)"
    )


def print_outcome(
    outcome: StreamOutcome,
    verdict: Verdict,
    value: Any,
    output_format: str,
    *,
    handler_names: Sequence[str],
) -> None:
    """The value (or the raw results) on stdout, the summary on stderr.

    ``handler_names`` empty means no handler value to show: print the raw results.
    """
    shaped = bool(handler_names)
    if output_format == "json":
        document = outcome.to_json()
        document.update(
            ok=verdict.ok,
            exit_status=verdict.exit_status,
            failed_tids=list(verdict.failed_tids),
            problems=list(verdict.problems),
        )
        if shaped:
            document["handlers"] = list(handler_names)
            document["value"] = to_jsonable(value)
        sys.stdout.write(render_json(document))
    else:
        table = tabulate(value) if shaped else _raw_table(outcome)
        if output_format == "csv":
            if table[0] != ["value"] or table[1]:
                sys.stdout.write(render_csv(table))
        elif table[1]:
            sys.stdout.write(render_table(result_view(table), terminal_width(sys.stdout)))
    sys.stdout.flush()
    _print_summary(outcome, verdict)


def _raw_table(outcome: StreamOutcome) -> tuple[list[str], list[list[Any]]]:
    rows = [[result.as_dict()[key] for key in RESULT_KEYS] for result in outcome.ordered_results()]
    return list(RESULT_KEYS), rows


def _print_summary(outcome: StreamOutcome, verdict: Verdict) -> None:
    lines = []
    if verdict.ok:
        where = f" on {outcome.target}" if outcome.target else ""
        lines.append(
            f"{len(outcome.commands)} command(s) succeeded{where} in {outcome.elapsed_s:.2f} s"
        )
    else:
        lines.extend(verdict.problems)
    lines.extend(
        f"warning: unexpected response for tid {u.tid} ({u.reason})"
        for u in outcome.unexpected[:10]
    )
    lines.extend(f"warning: plugin error: {error}" for error in outcome.plugin_errors[:10])
    for line in lines:
        print(f"remsvc: {line}", file=sys.stderr)
