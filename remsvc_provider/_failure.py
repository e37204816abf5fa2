"""The message a failed task ends with, formatted from the run's verdict.

Whether the run failed is decided by :func:`remsvc_core.verdict.judge` (every raw
result against the accepted exit codes, the tids that never got an answer, the
stream's status). This names each failed tid with its exit code, its command text and
the start of its stderr, so the task log says what went wrong without opening the XCom.
"""

from __future__ import annotations

from remsvc_core.verdict import Verdict

STDERR_CHARS = 200
COMMAND_CHARS = 80
MAX_LISTED = 20


def failure_message(task_id: str, judged: Verdict) -> str | None:
    """The exception message for a failed task, or None when nothing failed."""
    if judged.ok:
        return None
    problems = judged.failure_parts(
        shown_tids=MAX_LISTED,
        stderr_chars=STDERR_CHARS,
        listed_tids=MAX_LISTED,
        command_chars=COMMAND_CHARS,
    )
    if judged.handler_error:
        problems.append(f"the result handler failed: {judged.handler_error}")
    where = f" on {judged.target}" if judged.target else ""
    kept = (
        f"{judged.results} of {judged.commands} result(s) arrived and are "
        "kept in the XCom (state FAILED)"
    )
    return f"RemSvc task {task_id!r} failed{where}: " + "; ".join([*problems, kept])
