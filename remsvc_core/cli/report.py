"""Judging a finished stream and printing it: the verdict, the value, the summary line.

The order follows the contract every front end keeps: the success check runs on all
raw results (with the pipeline's accepted exit codes), then the pipeline shapes them,
then the value is printed, and only then does a failure set the exit status.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import Any

from remsvc_core import verdict
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
from remsvc_core.handlers import ResultPipeline
from remsvc_core.output import truncated_at
from remsvc_core.printable import printable
from remsvc_core.results import RESULT_KEYS, StreamOutcome
from remsvc_core.verdict import Verdict


def judge(outcome: StreamOutcome, pipeline: ResultPipeline) -> Verdict:
    """The run's verdict: every raw result against the pipeline's accepted exit codes."""
    return verdict.judge(outcome, pipeline.accepted_rcs)


def exit_status(judged: Verdict) -> int:
    """The exit status a verdict maps to (see EXIT_STATUS_HELP)."""
    if judged.connection_failed:
        return exit_codes.CONNECTION
    return exit_codes.OK if judged.ok else exit_codes.FAILED


def problems(judged: Verdict) -> list[str]:
    """The verdict as the lines ``remsvc run`` prints after ``remsvc:``."""
    lines = []
    if judged.failed:
        listed = verdict.listed([f"tid {r.tid} (rc {r.rc})" for r in judged.failed], 10)
        lines.append(f"{len(judged.failed)} of {judged.commands} command(s) failed: {listed}")
    stream = judged.stream_problems()
    if stream:
        lines.append("; ".join(stream))
        if judged.connection_failed:
            lines.append(_connection_hint(judged))
    if judged.handler_error:
        lines.append(f"handler failed: {judged.handler_error}")
    return lines


CAP_HINT = (
    "the server's output cap cut it: raise it with --output-cap-bytes (in-process server) "
    "or output_cap_bytes in the server's [server] section"
)


def truncations(outcome: StreamOutcome) -> list[dict[str, Any]]:
    """Every output the server cut at its cap: ``{"tid", "stream", "cap_bytes"}``."""
    found = []
    for result in outcome.ordered_results():
        for stream, text in (("stdout", result.out), ("stderr", result.err)):
            cap = truncated_at(text)
            if cap is not None:
                found.append({"tid": result.tid, "stream": stream, "cap_bytes": cap})
    return found


def truncation_lines(outcome: StreamOutcome) -> list[str]:
    cut = truncations(outcome)
    if not cut:
        return []
    which = verdict.listed([f"tid {c['tid']} {c['stream']}" for c in cut], 10)
    return [f"output truncated at {cut[0]['cap_bytes']:,} bytes: {which}; {CAP_HINT}"]


def _connection_hint(judged: Verdict) -> str:
    if judged.status_code == "UNAUTHENTICATED":
        return "the server refused the token: check --token-file/--token-env (or $REMSVC_TOKEN)"
    return (
        f"could not talk to {judged.target or 'the server'}: check --target/--conn, that the "
        "server is running, and the TLS options (--tls, --ca-cert, --client-cert)"
    )


def print_outcome(
    outcome: StreamOutcome,
    judged: Verdict,
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
            ok=judged.ok,
            exit_status=exit_status(judged),
            failed_tids=judged.failed_tids,
            problems=problems(judged) + truncation_lines(outcome),
            truncated=truncations(outcome),
        )
        if shaped:
            document["handlers"] = list(handler_names)
            document["value"] = to_jsonable(value)
        sys.stdout.write(render_json(document))
    else:
        write_table(tabulate(value) if shaped else _raw_table(outcome), output_format)
    sys.stdout.flush()
    _print_summary(outcome, judged)


def write_table(table: tuple[list[str], list[list[Any]]], output_format: str) -> None:
    """Rows on stdout as CSV, or as a table fitted to the terminal (nothing for none)."""
    if output_format == "csv":
        if table[0] != ["value"] or table[1]:
            sys.stdout.write(render_csv(table))
    elif table[1]:
        sys.stdout.write(render_table(result_view(table), terminal_width(sys.stdout)))


def _raw_table(outcome: StreamOutcome) -> tuple[list[str], list[list[Any]]]:
    rows = [
        [_flag_cut(key, result.as_dict()[key]) for key in RESULT_KEYS]
        for result in outcome.ordered_results()
    ]
    return list(RESULT_KEYS), rows


def _flag_cut(key: str, value: Any) -> Any:
    """A table shows a cell's first line: say there that the output was cut."""
    if key in ("out", "err") and isinstance(value, str):
        cap = truncated_at(value)
        if cap is not None:
            return f"[truncated at {cap:,} bytes] {value}"
    return value


def _print_summary(outcome: StreamOutcome, judged: Verdict) -> None:
    lines = []
    cut = truncation_lines(outcome)
    if judged.ok:
        where = f" on {outcome.target}" if outcome.target else ""
        but = ", but some output is incomplete" if cut else ""
        lines.append(
            f"{len(outcome.commands)} command(s) succeeded{where} in {outcome.elapsed_s:.2f} s"
            + but
        )
    else:
        lines.extend(problems(judged))
    lines.extend(f"warning: {line}" for line in cut)
    lines.extend(
        f"warning: unexpected response for tid {u.tid} ({u.reason})"
        for u in outcome.unexpected[:10]
    )
    lines.extend(f"warning: plugin error: {error}" for error in outcome.plugin_errors[:10])
    for line in lines:
        # Status details come from the server: no escape sequences, no forged lines.
        print(f"remsvc: {printable(line)}", file=sys.stderr)
