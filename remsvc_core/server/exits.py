"""How a command's main child ended: its status without reaping it, its exit code,
and (when asked) what it cost, read as it is reaped."""

from __future__ import annotations

import os
import resource
import time

from remsvc_core.server.children import Child
from remsvc_core.server.outcome import ResourceUsage

__all__ = ["exit_code", "exit_status", "reap_with_usage"]


def exit_status(pid: int) -> int | None:
    """An exited child's status, Popen-style (-N: killed by signal N), without reaping it;
    None while it runs."""
    try:
        info = os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT)
    except ChildProcessError:  # pragma: no cover - reaped by someone else
        return None
    if info is None or info.si_pid == 0:
        return None
    return info.si_status if info.si_code == os.CLD_EXITED else -info.si_status


def exit_code(returncode: int) -> int:
    """The rc to report: killed by a signal reads the way shells say it (128 + N)."""
    return 128 - returncode if returncode < 0 else returncode


def reap_with_usage(child: Child, started: float) -> ResourceUsage | None:
    """Reap the exited ``child`` now and read what it and every descendant it waited
    for cost (``wait4``); ``started`` is its ``time.monotonic()`` start. The child's
    ``returncode`` is set, so whoever reaps it later finds it reaped."""
    try:
        pid, status, rusage = os.wait4(child.pid, os.WNOHANG)
    except ChildProcessError:  # pragma: no cover - reaped elsewhere
        return None
    if pid == 0:  # pragma: no cover - its exit was seen, so it is a zombie
        return None
    child.returncode = os.waitstatus_to_exitcode(status)
    # Linux starts a spawned process's peak at the resident size of the process that
    # spawned it (the high-water mark is carried over at fork and exec), so a command's
    # ru_maxrss is never below this server's own peak: a figure at or under it says
    # nothing about the command, and is not reported.
    own_peak = _own_peak_kb()
    return ResourceUsage(
        wall_ms=round((time.monotonic() - started) * 1000),
        user_cpu_ms=round(rusage.ru_utime * 1000),
        sys_cpu_ms=round(rusage.ru_stime * 1000),
        max_rss_kb=rusage.ru_maxrss if rusage.ru_maxrss > own_peak else None,
    )


def _own_peak_kb() -> int:
    """This process's own peak resident size in KiB (``VmHWM``). Not ``ru_maxrss`` of
    RUSAGE_SELF: that also carries the peak of whatever started this server (a large
    parent, such as a test runner, would hide every command below its size)."""
    try:
        with open("/proc/self/status", "rb") as status:
            for line in status:
                if line.startswith(b"VmHWM:"):
                    return int(line.split()[1])
    except (OSError, ValueError, IndexError):  # pragma: no cover - not Linux procfs
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # pragma: no cover
