"""Killing what a command started: its process group, and the processes that left it.

Each command runs in a session of its own, so its process group id is its pid and
``killpg`` reaches the shell, its children and grandchildren. A process can leave
the group (``setsid``, a daemon's double fork); to find those too, every command's
processes inherit ``REMSVC_RUN_TAG=<unique id>`` in their environment and /proc is
searched for it. (A process that clears its own environment is beyond this.)

Killing the group is one system call and happens at once, on the caller's thread.
The /proc search reads the environment of every process on the machine: tens of
milliseconds with a thousand processes. Done once per killed command on the event
loop, 500 commands cancelled together froze the server for half a minute. So the
search is an :class:`EscapeeSweeper`'s job: one background thread, which takes every
tag asked for while it was busy (or within a short window) and finds them all in a
single pass. An escapee lives a few milliseconds longer; the loop never waits.

``kill_group`` takes the group id (a pid) the caller still holds: the main child
must not have been reaped yet, or the id could belong to someone else by now.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import threading
import time
from collections.abc import Collection, Iterable

__all__ = ["RUN_TAG_VAR", "EscapeeSweeper", "kill_group", "kill_tagged", "tagged_pids"]

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

    One pass over /proc serves any number of tags.
    """
    entries = [f"\0{RUN_TAG_VAR}={tag}\0".encode() for tag in tags]
    if not entries:
        return []
    found = []
    try:
        names = os.listdir("/proc")
    except OSError:  # pragma: no cover - no /proc: nothing more can be found
        return []
    own = os.getpid()
    for name in names:
        if not name.isdigit() or int(name) == own:
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


class EscapeeSweeper:
    """Kills the tagged processes of killed commands from one background thread.

    :meth:`sweep` returns at once. The thread waits ``window_s`` after the first tag
    of a batch (commands cancelled together arrive within it), then finds every
    pending tag in one /proc pass; tags asked for during a pass make the next batch.
    It exits after ``idle_s`` without work and is started again on demand, so an
    idle server (or a stopped embedded one) keeps no thread for it.
    """

    def __init__(self, *, window_s: float = 0.02, idle_s: float = 2.0) -> None:
        self.window_s = window_s
        self.idle_s = idle_s
        self._pending: set[str] = set()
        self._sweeping = False
        self._thread: threading.Thread | None = None
        self._changed = threading.Condition()

    @property
    def idle(self) -> bool:
        """Nothing pending and no pass running."""
        with self._changed:
            return not self._pending and not self._sweeping

    def sweep(self, tags: Iterable[str]) -> None:
        """Kill, soon and off this thread, every process carrying one of ``tags``."""
        with self._changed:
            self._pending.update(tags)
            if not self._pending:
                return
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="remsvc-sweep", daemon=True)
                self._thread.start()
            self._changed.notify_all()

    def wait_idle(self, timeout: float) -> bool:
        """Block (bounded) until every requested sweep is done; True if it is."""
        with self._changed:
            return self._changed.wait_for(lambda: not self._pending and not self._sweeping, timeout)

    def _run(self) -> None:
        while True:
            with self._changed:
                if not self._changed.wait_for(lambda: bool(self._pending), self.idle_s):
                    self._thread = None  # sweep() starts a new one when needed
                    return
            # Let the rest of a burst arrive (outside the lock: sweep() stays cheap).
            time.sleep(self.window_s)
            with self._changed:
                tags, self._pending = self._pending, set()
                self._sweeping = True
            try:
                kill_tagged(tags)
            except Exception:  # pragma: no cover - never let the thread die silently
                log.exception("sweeping for the processes of killed commands failed")
            finally:
                with self._changed:
                    self._sweeping = False
                    self._changed.notify_all()
