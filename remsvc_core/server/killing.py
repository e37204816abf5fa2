"""Killing what a command started: its process group, and the processes that left it.

Each command runs in a session of its own, so its process group id is its pid and
``killpg`` reaches the shell, its children and grandchildren. A process can leave
the group (``setsid``, a daemon's double fork); to find those too, every command's
processes inherit ``REMSVC_RUN_TAG=<unique id>`` in their environment and /proc is
searched for it. (A process that clears its own environment is beyond this.)

Both take the group id (a pid) the caller still holds: the main child must not have
been reaped yet, or the id could belong to someone else by now.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
from collections.abc import Collection

__all__ = ["RUN_TAG_VAR", "kill_group", "kill_tagged", "tagged_pids"]

log = logging.getLogger("remsvc.server")

# Set in every command's environment; inherited by all it starts.
RUN_TAG_VAR = "REMSVC_RUN_TAG"
# A process tree that forks while it is being killed needs another sweep; bounded.
_ESCAPE_SWEEPS = 5


def kill_group(pgid: int) -> None:
    """SIGKILL the process group ``pgid``; one that is gone already is fine."""
    try:
        os.killpg(pgid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    except PermissionError as exc:  # pragma: no cover - a non-root server, another user's child
        log.warning("cannot kill process group %d: %s", pgid, exc)


def tagged_pids(tags: Collection[str]) -> list[int]:
    """Running processes whose environment holds ``RUN_TAG_VAR=<one of tags>`` (from /proc).

    One pass over /proc serves any number of tags, so killing many commands at once
    (shutdown) costs one sweep, not one per command.
    """
    entries = [f"\0{RUN_TAG_VAR}={tag}\0".encode() for tag in tags]
    if not entries:
        return []
    found = []
    try:
        names = os.listdir("/proc")
    except OSError:  # pragma: no cover - no /proc: nothing more can be found
        return []
    for name in names:
        if not name.isdigit() or int(name) == os.getpid():
            continue
        try:
            with open(f"/proc/{name}/environ", "rb") as handle:
                environ = b"\0" + handle.read()
        except OSError:  # gone, or not ours to read
            continue
        if any(entry in environ for entry in entries):
            found.append(int(name))
    return found


def kill_tagged(tags: Collection[str]) -> None:
    """SIGKILL every process carrying one of ``tags``, sweeping again if some forked meanwhile."""
    for _ in range(_ESCAPE_SWEEPS):
        pids = tagged_pids(tags)
        if not pids:
            return
        for pid in pids:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)
    log.warning("processes of a killed command kept appearing: %s", tagged_pids(tags))
