"""The runner's live children: which are running, killing their processes, reaping them.

A child stays here from its start until it is reaped. It is reaped last, after its
process group was killed: until then its pid, which is also its group id, cannot be
recycled, so a kill by group id can only reach the command's own processes.

Neither killing nor reaping makes the event loop wait: the group is killed with one
system call, processes that left it are found by the :class:`EscapeeSweeper`'s
thread, and a child that is not dead yet when it is reaped (SIGKILL was just sent)
is left to one reaper thread that polls every such child until it is collected.
"""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Protocol

from remsvc_core.server.killing import EscapeeSweeper, kill_group

__all__ = ["Child", "Children"]

# How often the reaper thread looks at children that were killed but not yet dead.
_REAP_POLL_S = 0.01


class Child(Protocol):
    """What the runner needs of a started child: Popen's poll/wait, or ours."""

    pid: int
    returncode: int | None

    def poll(self) -> int | None: ...

    def wait(self) -> int: ...


class Children:
    """Started, not yet reaped children, each with the run tag its processes carry."""

    def __init__(self, sweeper: EscapeeSweeper | None = None) -> None:
        self._live: dict[int, Child] = {}
        self._tags: dict[int, str] = {}  # pid -> the run tag of its processes
        self.sweeper = sweeper or EscapeeSweeper()
        # Killed children not dead yet, collected by the reaper thread.
        self._dying: dict[int, Child] = {}
        self._reaper: threading.Thread | None = None
        self._reaper_lock = threading.Lock()

    @property
    def pids(self) -> list[int]:
        return sorted(self._live)

    def add(self, child: Child, tag: str) -> None:
        self._live[child.pid] = child
        self._tags[child.pid] = tag

    def kill(self, pid: int) -> None:
        """SIGKILL the command's process group now, and soon every process that escaped it."""
        kill_group(pid)
        tag = self._tags.get(pid)
        if tag is not None:
            self.sweeper.sweep((tag,))

    def kill_all(self) -> None:
        """SIGKILL every live command's processes (server shutdown), with one /proc sweep."""
        for pid in list(self._live):
            kill_group(pid)
        self.sweeper.sweep(self._tags.values())

    def reap(self, child: Child) -> int | None:
        """Collect the child's exit status; a child not dead yet is reaped in the background."""
        if child.poll() is None:
            with self._reaper_lock:
                self._dying[child.pid] = child
                if self._reaper is None:
                    self._reaper = threading.Thread(
                        target=self._reap_dying, name="remsvc-reap", daemon=True
                    )
                    self._reaper.start()
            return None
        self._forget(child.pid)
        return child.returncode

    def _reap_dying(self) -> None:
        while True:
            with self._reaper_lock:
                dying = list(self._dying.values())
                if not dying:
                    self._reaper = None
                    return
            for child in dying:
                try:
                    done = child.poll() is not None
                except Exception:  # pragma: no cover - cannot be collected: stop trying
                    done = True
                if done:
                    with self._reaper_lock:
                        self._dying.pop(child.pid, None)
                    self._forget(child.pid)
            time.sleep(_REAP_POLL_S)

    def _forget(self, pid: int) -> None:
        self._live.pop(pid, None)
        self._tags.pop(pid, None)

    async def wait_idle(self, timeout: float) -> bool:
        """Wait (bounded) until every child was reaped and every sweep done; True if so."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        # Reaping and sweeping happen in threads, so poll (briefly) rather than wire up events.
        while (self._live or not self.sweeper.idle) and loop.time() < deadline:  # noqa: ASYNC110
            await asyncio.sleep(0.02)
        return not self._live and self.sweeper.idle
