"""Did a fan-out succeed, and if not, why: decided here, only formatted elsewhere.

Each started host is judged like any single batch (:func:`remsvc_core.verdict.judge`:
every raw result against the accepted exit codes, the tids with no answer, the
stream's status). The run succeeds when every host started and at least ``required``
of them succeeded (the success threshold, by default all of them), and the handler
pipeline could shape the results. The CLI and the Airflow operator format a
:class:`FleetVerdict`; neither decides anything on its own.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Collection

from remsvc_core.fleet.outcome import NOT_STARTED, FleetOutcome
from remsvc_core.verdict import DEFAULT_ACCEPTED_RCS, Verdict, judge, listed

__all__ = ["FleetVerdict", "judge_fleet", "verdict_summary"]

#: What the summary of one host's verdict shows before it says "and N more".
SHOWN_TIDS = 3
STDERR_CHARS = 120


@dataclasses.dataclass(frozen=True)
class FleetVerdict:
    """How a fan-out turned out.

    ``succeeded`` and ``not_started`` are host labels in target order; ``failed`` pairs
    each failed host's label with its own :class:`~remsvc_core.verdict.Verdict`;
    ``required`` is how many hosts had to succeed; ``max_errors`` the error budget
    (None: none); ``handler_error`` is set when the result pipeline failed on the data.
    """

    hosts: int
    succeeded: tuple[str, ...] = ()
    failed: tuple[tuple[str, Verdict], ...] = ()
    not_started: tuple[str, ...] = ()
    required: int = 0
    max_errors: int | None = None
    handler_error: str | None = None

    @property
    def ok(self) -> bool:
        """Every host started, enough of them succeeded, and the handlers could shape
        the results."""
        return (
            not self.not_started
            and len(self.succeeded) >= self.required
            and self.handler_error is None
        )

    @property
    def failed_hosts(self) -> list[str]:
        return [host for host, _ in self.failed]

    @property
    def connection_failed(self) -> bool:
        """No host succeeded, and every one that failed could not be reached (or
        refused who we are)."""
        return (
            bool(self.failed)
            and not self.succeeded
            and all(judged.connection_failed for _, judged in self.failed)
        )

    def with_handler_error(self, message: str) -> FleetVerdict:
        return dataclasses.replace(self, handler_error=message)

    def problems(self) -> list[str]:
        """What went wrong with the run as a whole, one item each; empty when nothing did
        (failed hosts within the success threshold are listed too)."""
        problems = []
        if self.failed:
            problems.append(
                f"{len(self.failed)} of {self.hosts} host(s) failed: "
                f"{listed(self.failed_hosts, noun='host(s)')}"
            )
        if self.not_started:
            problems.append(
                f"{len(self.not_started)} host(s) not started because the error budget "
                f"(max_errors={self.max_errors}) ran out: "
                f"{listed(list(self.not_started), noun='host(s)')}"
            )
        if len(self.succeeded) < self.required < self.hosts:  # a threshold was set
            problems.append(
                f"{len(self.succeeded)} of {self.hosts} host(s) succeeded, {self.required} "
                "needed (the success threshold)"
            )
        if self.handler_error:
            problems.append(f"the result handler failed: {self.handler_error}")
        return problems

    def host_lines(self, limit: int = 10) -> list[str]:
        """One line per failed host (at most ``limit``, then how many more): its label
        and what failed there (see :func:`verdict_summary`)."""
        lines = [
            f"{_where(host, judged.target)}: {verdict_summary(judged)}"
            for host, judged in self.failed[:limit]
        ]
        if len(self.failed) > limit:
            lines.append(f"and {len(self.failed) - limit} more failed host(s)")
        return lines


def verdict_summary(
    judged: Verdict, shown_tids: int = SHOWN_TIDS, stderr_chars: int = STDERR_CHARS
) -> str:
    """One host's failure in a line: the first failed tids with their exit code and
    the start of their stderr, the tids with no answer, how the stream ended."""
    parts = judged.failure_parts(
        shown_tids=shown_tids, stderr_chars=stderr_chars, listed_tids=10, details_chars=stderr_chars
    )
    return "; ".join(parts) or "failed"


def _where(host: str, target: str) -> str:
    """The host's label, with its server's address when that says more."""
    return f"{host} ({target})" if target and target != host else host


def judge_fleet(
    fleet: FleetOutcome, accepted_rcs: Collection[int] = DEFAULT_ACCEPTED_RCS
) -> FleetVerdict:
    """The success check of a fan-out: each started host judged on its own results."""
    succeeded: list[str] = []
    failed: list[tuple[str, Verdict]] = []
    for run in fleet.hosts:
        if run.outcome is None:
            continue
        judged = judge(run.outcome, accepted_rcs)
        if judged.ok:
            succeeded.append(run.host)
        else:
            failed.append((run.host, judged))
    return FleetVerdict(
        hosts=len(fleet.hosts),
        succeeded=tuple(succeeded),
        failed=tuple(failed),
        not_started=tuple(run.host for run in fleet.hosts if run.state == NOT_STARTED),
        required=fleet.required,
        max_errors=fleet.max_errors,
    )
