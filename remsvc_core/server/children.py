"""The runner's live children: which are running, killing their processes, reaping them.

A child stays here from its start until it is reaped. It is reaped last, after its
process group was killed: until then its pid, which is also its group id, cannot be
recycled, so a kill by group id can only reach the command's own processes.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from typing import Protocol

from remsvc_core.server.killing import kill_group, kill_tagged

__all__ = ["Child", "Children"]


class Child(Protocol):
    """What the runner needs of a started child: Popen's poll/wait, or ours."""

    pid: int
    returncode: int | None

    def poll(self) -> int | None: ...

    def wait(self) -> int: ...


class Children:
    """Started, not yet reaped children, each with the run tag its processes carry."""

    def __init__(self) -> None:
        self._live: dict[int, Child] = {}
        self._tags: dict[int, str] = {}  # pid -> the run tag of its processes
        self._reaping: set[int] = set()

    @property
    def pids(self) -> list[int]:
        return sorted(self._live)

    def add(self, child: Child, tag: str) -> None:
        self._live[child.pid] = child
        self._tags[child.pid] = tag

    def kill(self, pid: int) -> None:
        """SIGKILL the command's process group and every process that escaped it."""
        kill_group(pid)
        tag = self._tags.get(pid)
        if tag is not None:
            kill_tagged([tag])

    def kill_all(self) -> None:
        """SIGKILL every live command's processes (server shutdown), with one /proc sweep."""
        for pid in list(self._live):
            kill_group(pid)
        kill_tagged(list(self._tags.values()))

    def reap(self, child: Child) -> int | None:
        """Collect the child's exit status; a child not dead yet is reaped in the background."""
        if child.poll() is None:
            if child.pid in self._reaping:
                return None
            self._reaping.add(child.pid)

            def reap_later() -> None:
                with contextlib.suppress(Exception):
                    child.wait()
                self._forget(child.pid)
                self._reaping.discard(child.pid)

            threading.Thread(
                target=reap_later, name=f"remsvc-reap-{child.pid}", daemon=True
            ).start()
            return None
        self._forget(child.pid)
        return child.returncode

    def _forget(self, pid: int) -> None:
        self._live.pop(pid, None)
        self._tags.pop(pid, None)

    async def wait_idle(self, timeout: float) -> bool:
        """Wait (bounded) until every child was reaped; True if none is left."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        # Reaping happens in threads too, so poll (briefly) rather than wire up events.
        while self._live and loop.time() < deadline:  # noqa: ASYNC110
            await asyncio.sleep(0.02)
        return not self._live
