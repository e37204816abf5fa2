"""What running one command produces: :class:`ExecResult`, or why it could not start."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["TIMED_OUT", "CannotStart", "ExecResult", "Outcome", "ResourceUsage"]

# The ``err`` of a timed-out command, as upstream writes it.
TIMED_OUT = "process timed out"


@dataclass(frozen=True)
class ResourceUsage:
    """What a command cost: wall time, and the CPU time and peak memory of its process
    and every descendant it waited for (``wait4``'s rusage). ``max_rss_kb`` is None
    when the peak was not above the server's own (see ``exits.reap_with_usage``)."""

    wall_ms: int
    user_cpu_ms: int
    sys_cpu_ms: int
    max_rss_kb: int | None


@dataclass(frozen=True)
class ExecResult:
    """What one command produced. ``pid`` is the child's (None if it never started);
    ``signal`` the signal that ended it, when one did (``rc`` is then 128 + signal)."""

    rc: int
    out: str
    err: str
    pid: int | None = None
    timed_out: bool = False
    streamed: bool = False
    out_size: int = 0
    err_size: int = 0
    out_truncated: bool = False
    err_truncated: bool = False
    usage: ResourceUsage | None = None
    signal: int | None = None


# What ``on_done`` receives: the result, or the exception that kept the runner from
# producing one (a server bug; the service reports it rather than lose the command).
Outcome = ExecResult | Exception


class CannotStart(Exception):
    """The command cannot be started; its result is ``rc`` with the message in ``err``.

    Raised inside the runner (unknown user, missing pwsh, out of descriptors) and
    turned into an :class:`ExecResult` there, as upstream answers these: a result,
    not a failed call. It never reaches the service or a caller.
    """

    def __init__(self, rc: int, message: str) -> None:
        super().__init__(message)
        self.rc = rc

    def result(self) -> ExecResult:
        return ExecResult(rc=self.rc, out="", err=str(self))
