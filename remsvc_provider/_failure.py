"""The message a failed task ends with, formatted from the run's verdict.

Whether the run failed is decided by :func:`remsvc_core.verdict.judge` (every raw
result against the accepted exit codes, the tids that never got an answer, the
stream's status). This names each failed tid with its exit code, its command text and
the start of its stderr, so the task log says what went wrong without opening the XCom.
"""

from __future__ import annotations

from remsvc_core.verdict import OK, Verdict, listed

STDERR_CHARS = 200
COMMAND_CHARS = 80
MAX_LISTED = 20


def failure_message(task_id: str, judged: Verdict) -> str | None:
    """The exception message for a failed task, or None when nothing failed."""
    if judged.ok:
        return None
    problems = [
        f"tid {result.tid} rc={result.rc} (cmd {_start(result.cmd, COMMAND_CHARS)}) "
        f"stderr: {_start(result.err)}"
        for result in judged.failed[:MAX_LISTED]
    ]
    if len(judged.failed) > MAX_LISTED:
        problems.append(f"and {len(judged.failed) - MAX_LISTED} more failed command(s)")
    if judged.missing_tids:
        problems.append(f"no result for tid(s) {listed(judged.missing_tids, MAX_LISTED)}")
    if judged.status_code != OK:
        details = f": {judged.status_details}" if judged.status_details else ""
        problems.append(f"stream ended with {judged.status_code}{details}")
    if judged.handler_error:
        problems.append(f"the result handler failed: {judged.handler_error}")
    where = f" on {judged.target}" if judged.target else ""
    kept = (
        f"{judged.results} of {judged.commands} result(s) arrived and are "
        "kept in the XCom (state FAILED)"
    )
    return f"RemSvc task {task_id!r} failed{where}: " + "; ".join([*problems, kept])


def _start(text: str, limit: int = STDERR_CHARS) -> str:
    flat = " ".join(text.split())
    if not flat:
        return "(empty)"
    if len(flat) > limit:
        flat = flat[:limit] + "..."
    return repr(flat)
