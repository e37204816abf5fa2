"""Reading process state from /proc: children, zombies, descriptors, memory, markers.

Used to prove a server leaves nothing behind. Only /proc is read (psutil is used
where it adds nothing /proc does not say plainly), and every wait is bounded.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

__all__ = [
    "ProcessSnapshot",
    "children_of",
    "cmdlines",
    "kill_marked",
    "marked_pids",
    "snapshot",
    "wait_for",
]


def _stat_fields(pid: int) -> tuple[str, int] | None:
    """(state letter, parent pid) of ``pid``, or None if it is gone."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as handle:
            text = handle.read()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    # Fields after the parenthesised name: state, ppid, ...
    rest = text.rsplit(")", 1)[1].split()
    return rest[0], int(rest[1])


def _all_pids() -> list[int]:
    return [int(name) for name in os.listdir("/proc") if name.isdigit()]


def children_of(pid: int) -> dict[int, str]:
    """``{child pid: state}`` for every direct child of ``pid`` (zombies included)."""
    found: dict[int, str] = {}
    for other in _all_pids():
        fields = _stat_fields(other)
        if fields is not None and fields[1] == pid:
            found[other] = fields[0]
    return found


def cmdlines() -> Iterator[tuple[int, bytes]]:
    """``(pid, raw cmdline)`` of every process that can be read right now."""
    for pid in _all_pids():
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as handle:
                cmdline = handle.read()
        except (FileNotFoundError, ProcessLookupError, PermissionError):
            continue
        yield pid, cmdline


def marked_pids(marker: str) -> list[int]:
    """Pids whose command line contains ``marker`` and that still run (zombies excluded)."""
    needle = marker.encode()
    pids = []
    for pid, cmdline in cmdlines():
        if needle in cmdline and pid != os.getpid():
            fields = _stat_fields(pid)
            if fields is not None and fields[0] not in ("Z", "X"):
                pids.append(pid)
    return pids


def kill_marked(marker: str) -> list[int]:
    """SIGKILL what carries ``marker`` (test clean-up only); returns the pids killed."""
    pids = marked_pids(marker)
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    return pids


@dataclass(frozen=True)
class ProcessSnapshot:
    """What a process holds at one moment."""

    pid: int
    fds: int
    rss_bytes: int
    threads: int
    children: dict[int, str]

    @property
    def zombies(self) -> list[int]:
        return [pid for pid, state in self.children.items() if state == "Z"]


def snapshot(pid: int) -> ProcessSnapshot:
    fds = len(os.listdir(f"/proc/{pid}/fd"))
    rss = threads = 0
    with open(f"/proc/{pid}/status", encoding="ascii", errors="replace") as handle:
        for line in handle:
            if line.startswith("VmRSS:"):
                rss = int(line.split()[1]) * 1024
            elif line.startswith("Threads:"):
                threads = int(line.split()[1])
    return ProcessSnapshot(pid, fds, rss, threads, children_of(pid))


def wait_for(condition: Callable[[], bool], timeout: float, interval: float = 0.05) -> bool:
    """Poll ``condition`` until it holds or ``timeout`` seconds pass; returns the last value."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(interval)
    return condition()
