"""The success check and the message a failed task ends with.

The check covers every raw result (exit codes the pipeline accepts), the tids that
never got an answer and the status the stream ended with. The message names each
failed tid with its exit code and the start of its stderr, so the task log says
what went wrong without opening the XCom.
"""

from __future__ import annotations

from remsvc_core.handlers import ResultPipeline
from remsvc_core.results import OK, StreamOutcome

STDERR_CHARS = 200
MAX_LISTED = 20


def pipeline_failures(outcome: StreamOutcome, pipeline: ResultPipeline) -> list[str]:
    """One line per problem; empty when the stream counts as a success."""
    problems: list[str] = []
    failed = pipeline.failed_tids(outcome.raw_results())
    for tid in failed[:MAX_LISTED]:
        result = outcome.results[tid]
        problems.append(f"tid {tid} rc={result.rc} stderr: {_start(result.err)}")
    if len(failed) > MAX_LISTED:
        problems.append(f"and {len(failed) - MAX_LISTED} more failed command(s)")
    missing = outcome.missing_tids
    if missing:
        shown = ", ".join(map(str, missing[:MAX_LISTED]))
        more = f" and {len(missing) - MAX_LISTED} more" if len(missing) > MAX_LISTED else ""
        problems.append(f"no result for tid(s) {shown}{more}")
    if outcome.status_code != OK:
        details = f": {outcome.status_details}" if outcome.status_details else ""
        problems.append(f"stream ended with {outcome.status_code}{details}")
    return problems


def describe_failures(
    task_id: str,
    outcome: StreamOutcome,
    problems: list[str],
    *,
    handler_error: str | None = None,
) -> str | None:
    """The exception message for a failed task, or None when nothing failed."""
    if handler_error:
        problems = [*problems, handler_error]
    if not problems:
        return None
    where = f" on {outcome.target}" if outcome.target else ""
    kept = (
        f"{len(outcome.results)} of {len(outcome.commands)} result(s) arrived and are "
        "kept in the XCom (state FAILED)"
    )
    return f"RemSvc task {task_id!r} failed{where}: " + "; ".join([*problems, kept])


def _start(text: str) -> str:
    flat = " ".join(text.split())
    if not flat:
        return "(empty)"
    if len(flat) > STDERR_CHARS:
        flat = flat[:STDERR_CHARS] + "..."
    return repr(flat)
