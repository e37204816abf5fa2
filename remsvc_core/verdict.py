"""Did a batch succeed, and if not, why: decided here, only formatted elsewhere.

Every front end follows the same order (see docs/architecture.md): the stream ends;
:func:`judge` checks *all* raw results against the exit codes the handler pipeline
accepts, the tids that never got an answer, and the status the stream ended with;
the pipeline shapes the results; the value is reported; only then does a failure
fail the task (the operator) or set the exit status (``remsvc run``). The operator,
the CLI and :meth:`StreamOutcome.describe_failure` format a :class:`Verdict`; none
of them decides anything on its own.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Collection, Sequence
from typing import TYPE_CHECKING

from remsvc_core.errors import CONNECTION_CODES

if TYPE_CHECKING:
    from remsvc_core.results import CommandResult, StreamOutcome, UnexpectedResponse

__all__ = ["DEFAULT_ACCEPTED_RCS", "OK", "Verdict", "judge", "listed", "start_of"]

OK = "OK"
#: Exit codes that count as success unless a handler says otherwise.
DEFAULT_ACCEPTED_RCS: frozenset[int] = frozenset({0})
#: How many items a message lists before it says "and K more".
LISTED = 20


def listed(items: Sequence[object], limit: int = LISTED, noun: str = "") -> str:
    """``"1, 2, 3"``, or ``"1, 2, ... and 7 more <noun>"`` past ``limit`` items."""
    shown = ", ".join(map(str, items[:limit]))
    extra = len(items) - limit
    if extra <= 0:
        return shown
    return f"{shown} and {extra} more" + (f" {noun}" if noun else "")


def start_of(text: str, limit: int, *, quote: bool = True) -> str:
    """The start of ``text`` on one line (``limit`` characters, then "..."), quoted;
    "(empty)" for blank text."""
    flat = " ".join(text.split())
    if not flat:
        return "(empty)"
    if len(flat) > limit:
        flat = flat[:limit] + "..."
    return repr(flat) if quote else flat


@dataclasses.dataclass(frozen=True)
class Verdict:
    """How one stream's batch turned out, judged on every raw result.

    ``failed`` are the results whose exit code is not accepted, in tid order;
    ``missing_tids`` the commands that got no answer; ``status_code`` and
    ``status_details`` how the stream ended; ``handler_error`` is set when the result
    pipeline failed on the data after the check (the value is then reported as the
    default sorted list, and the run fails); ``target`` is the server's ``host:port``.
    """

    commands: int
    results: int
    failed: tuple[CommandResult, ...] = ()
    missing_tids: tuple[int, ...] = ()
    status_code: str = OK
    status_details: str = ""
    unexpected: tuple[UnexpectedResponse, ...] = ()
    unexpected_count: int = 0
    handler_error: str | None = None
    target: str = ""

    @property
    def ok(self) -> bool:
        """Every command answered with an accepted exit code, the stream ended OK, and
        the handlers could shape the results."""
        return self.stream_ok and not self.failed and self.handler_error is None

    @property
    def stream_ok(self) -> bool:
        """The stream ended OK with every command answered (exit codes aside)."""
        return self.status_code == OK and not self.missing_tids

    @property
    def failed_tids(self) -> list[int]:
        return [result.tid for result in self.failed]

    @property
    def connection_failed(self) -> bool:
        """The server could not be reached, or refused who we are."""
        return self.status_code in CONNECTION_CODES

    def with_handler_error(self, message: str) -> Verdict:
        return dataclasses.replace(self, handler_error=message)

    def failure_parts(
        self,
        *,
        shown_tids: int = LISTED,
        stderr_chars: int = 200,
        listed_tids: int = LISTED,
        details_chars: int | None = None,
        command_chars: int | None = None,
    ) -> list[str]:
        """What failed, one item each, for a message: the first ``shown_tids`` failed
        commands with their exit code, the start of their command text (with
        ``command_chars``) and of their stderr, the tids with no answer, how the stream
        ended (its details cut at ``details_chars``, if given)."""
        parts = [
            f"tid {result.tid} rc={result.rc}"
            + (f" (cmd {start_of(result.cmd, command_chars)})" if command_chars else "")
            + f" stderr: {start_of(result.err, stderr_chars)}"
            for result in self.failed[:shown_tids]
        ]
        if len(self.failed) > shown_tids:
            parts.append(f"and {len(self.failed) - shown_tids} more failed command(s)")
        if self.missing_tids:
            parts.append(f"no result for tid(s) {listed(self.missing_tids, listed_tids)}")
        if self.status_code != OK:
            details = self.status_details
            if details and details_chars is not None:
                details = start_of(details, details_chars, quote=False)
            parts.append(
                f"stream ended with {self.status_code}" + (f": {details}" if details else "")
            )
        return parts

    def stream_problems(self) -> list[str]:
        """What went wrong with the stream itself (exit codes aside), one item each;
        empty when the stream ended OK with every command answered."""
        problems = []
        if self.status_code != OK:
            details = f": {self.status_details}" if self.status_details else ""
            problems.append(f"stream ended with {self.status_code}{details}")
        if self.missing_tids:
            problems.append(f"no result for tid(s) {listed(self.missing_tids)}")
        if self.unexpected:
            shown = listed([f"tid {u.tid} ({u.reason})" for u in self.unexpected], 10)
            extra = self.unexpected_count - len(self.unexpected)
            if extra > 0:
                shown += f" (and {extra} not kept)"
            problems.append(f"unexpected responses: {shown}")
        if problems:
            problems.append(f"{self.results} of {self.commands} result(s) arrived and are kept")
        return problems


def judge(outcome: StreamOutcome, accepted_rcs: Collection[int] = DEFAULT_ACCEPTED_RCS) -> Verdict:
    """The success check on every raw result, the missing tids and the stream status."""
    results = outcome.results
    return Verdict(
        commands=len(outcome.commands),
        results=len(results),
        failed=tuple(
            results[tid] for tid in sorted(results) if results[tid].rc not in accepted_rcs
        ),
        missing_tids=tuple(outcome.missing_tids),
        status_code=outcome.status_code,
        status_details=outcome.status_details,
        unexpected=tuple(outcome.unexpected),
        unexpected_count=outcome.unexpected_count,
        target=outcome.target,
    )
