"""A batch's commands, run in arrival order, at most ``max_parallel`` at once.

Every stream runs its commands through an :class:`Execution`: an ordinary stream owns
one and ends it with the call; a kept batch (``batch/1``) owns one that outlives its
streams. Upstream's order of events holds: a command is admitted (hash, policy) only
when it is about to start, and the stream's reader does not even look at the next
request until that one may start (:meth:`Execution.wait_for_room`).

When a command ends, the runner calls back from the event loop, and the execution
starts the waiting command *before* it hands the result on: the next child runs
while the previous result is sent.

Each command also takes one of its identity's command slots (``[limits]``, see
server/limits.py) as it starts; with none free it waits its turn, and the execution
starts it when a slot is handed over.
"""

from __future__ import annotations

import asyncio
import collections
import functools
import itertools
import logging
import time
from collections.abc import Callable
from typing import Any, Protocol

import grpc

from remsvc_core.server.command import RunningCommand
from remsvc_core.server.outcome import ExecResult, Outcome
from remsvc_core.server.runner import CommandRunner

__all__ = ["Execution", "Listener", "Refusal", "Slots"]

log = logging.getLogger("remsvc.server")


class Refusal(Exception):
    """Why a call ends without running more: a gRPC status code and its details."""

    def __init__(self, code: grpc.StatusCode, details: str) -> None:
        super().__init__(details)
        self.code = code
        self.details = details


class Listener(Protocol):
    """Who hears what an execution's commands do (a stream, or a kept batch)."""

    def command_starting(self, request: Any) -> None:
        """The command was admitted and is about to start."""

    def command_output(self, request: Any, fd: int, data: bytes, offset: int) -> None:
        """``data`` was read from the command's stdout (fd 1) or stderr (fd 2)."""

    def command_finished(
        self, request: Any, result: ExecResult, started_ms: int, ended_ms: int, decision: Any
    ) -> None:
        """The command ended; times are Unix milliseconds; ``decision`` admitted it."""

    def command_cancelled(self, request: Any, decision: Any, duration_s: float) -> None:
        """The command was killed before it ended (its caller went away, a cancel)."""

    def execution_stopped(self, refusal: Refusal) -> None:
        """A request was refused (or a server bug hit one): nothing more will start."""


class Slots(Protocol):
    """Command slots as an execution uses them (server/limits.py's CommandSlots)."""

    def try_acquire(self) -> bool:
        """Take a slot if one is free now."""

    def release(self) -> None:
        """Give back a slot taken (or handed over)."""

    def wait_turn(self, on_granted: Callable[[], None]) -> None:
        """Queue; ``on_granted`` runs once a slot was taken on this holder's behalf."""

    def stop_waiting(self) -> None:
        """Leave the queue (nothing is handed over after this)."""


class _NoLimit:
    """Slots for an execution that only ``max_parallel`` bounds."""

    def try_acquire(self) -> bool:
        return True

    def release(self) -> None:
        pass

    def wait_turn(self, on_granted: Callable[[], None]) -> None:  # pragma: no cover
        raise AssertionError("a slot is always free")

    def stop_waiting(self) -> None:
        pass


class Execution:
    """Runs the requests it is offered; tells its listener what they do."""

    def __init__(
        self,
        runner: CommandRunner,
        listener: Listener,
        *,
        admit: Callable[[Any], Any],
        max_parallel: int = 1,
        live_output: bool = False,
        usage: bool = False,
        slots: Slots | None = None,
    ) -> None:
        """``admit(request)`` raises :class:`Refusal` for a request that must not run, and
        returns what admitted it (the policy's decision) otherwise. ``slots`` are the
        identity's command slots (none: only ``max_parallel`` bounds it)."""
        self._runner = runner
        self._slots: Slots = slots if slots is not None else _NoLimit()
        self._handed_over = 0  # slots taken for us while we waited, not used yet
        self.listener = listener
        self._admit = admit
        self._free = max_parallel
        self._max_parallel = max_parallel
        self._live_output = live_output
        self._usage = usage
        self._waiting: collections.deque[Any] = collections.deque()
        self._running: dict[int, tuple[Any, RunningCommand]] = {}
        # key -> (request, monotonic start, the decision that admitted it)
        self._starts: dict[int, tuple[Any, float, Any]] = {}
        self._offsets: dict[int, list[int]] = {}  # tid -> bytes read so far, by fd
        self._serial = itertools.count()
        self._paused = False
        self.stopped: Refusal | None = None
        self._changed: asyncio.Future[None] | None = None

    @property
    def idle(self) -> bool:
        """Nothing runs and nothing waits to run."""
        return not self._running and not self._waiting

    @property
    def queued(self) -> bool:
        """Some request waits to start (for a slot, or for ``max_parallel``)."""
        return bool(self._waiting)

    @property
    def running_tids(self) -> list[int]:
        return [request.tid for request, _ in self._running.values()]

    @property
    def started_at(self) -> dict[int, float]:
        """When each running command started (``time.monotonic()``), by tid."""
        return {request.tid: started for request, started, _ in self._starts.values()}

    def offer(self, request: Any) -> None:
        """Run ``request`` when a slot is free (now, if one is)."""
        if self.stopped is not None:
            return
        self._waiting.append(request)
        self._start_waiting()

    async def wait_for_room(self, backlog: int = 1) -> None:
        """Return once fewer than ``backlog`` requests wait (or the execution stopped).

        With the default, once the last request offered has started: only then is the
        next one read, as upstream does. A kept batch reads ahead (its requests must
        outlive the stream), bounded by a larger ``backlog``."""
        while len(self._waiting) >= backlog and self.stopped is None:
            await self._wait_for_change()

    async def wait_until_idle(self) -> None:
        while not self.idle:
            await self._wait_for_change()

    def pause(self) -> None:
        """A reader is behind: start nothing, and stop reading running commands' output."""
        if self._paused:
            return
        self._paused = True
        for _, command in self._running.values():
            command.pause_output()

    def resume(self) -> None:
        if not self._paused:
            return
        self._paused = False
        for _, command in self._running.values():
            command.resume_output()
        self._start_waiting()

    def stop(self, refusal: Refusal) -> None:
        """Start nothing more; what runs may finish."""
        if self.stopped is None:
            self.stopped = refusal
            self._waiting.clear()
            self._slots.stop_waiting()
            self._give_back_unused()
            self._notify()

    def cancel(self, refusal: Refusal) -> None:
        """Start nothing more and kill what runs (its results are never reported)."""
        self.stop(refusal)
        now = time.monotonic()
        for key, (request, command) in list(self._running.items()):
            command.cancel()
            self._slots.release()  # a cancelled command never reaches _finished
            _, started, decision = self._starts.get(key, (request, now, None))
            self.listener.command_cancelled(request, decision, now - started)
        self._running.clear()
        self._starts.clear()
        self._free = self._max_parallel
        self._notify()

    # -- the runner's side ---------------------------------------------------------

    def _start_waiting(self) -> None:
        while self._free > 0 and self._waiting and not self._paused and self.stopped is None:
            if self._handed_over:
                self._handed_over -= 1
            elif not self._slots.try_acquire():
                self._slots.wait_turn(self._slot_handed_over)
                break
            self._begin(self._waiting.popleft())
        self._notify()

    def _slot_handed_over(self) -> None:
        self._handed_over += 1
        self._start_waiting()
        self._give_back_unused()  # stopped or paused meanwhile: someone else's turn

    def _give_back_unused(self) -> None:
        while self._handed_over:
            self._handed_over -= 1
            self._slots.release()

    def _begin(self, request: Any) -> None:
        # The caller took a command slot for this request: every way out that does
        # not reach _finished gives it back.
        try:
            decision = self._admit(request)
        except Refusal as refusal:
            self._slots.release()
            self._stopped_by(refusal)
            return
        try:
            self.listener.command_starting(request)
        except Exception:
            self._slots.release()
            log.exception("internal error starting tid=%d", request.tid)
            self._failed(request)
            return
        key = next(self._serial)
        started = time.monotonic()
        started_ms = time.time_ns() // 1_000_000
        self._free -= 1
        on_done = functools.partial(self._finished, key, request, started_ms, decision)
        on_output = functools.partial(self._output, request) if self._live_output else None
        try:
            command = self._runner.start(
                request.cmd,
                request.cmdtyp,
                request.cmdusr,
                on_done=on_done,
                on_output=on_output,
                want_usage=self._usage,
            )
        except Exception:
            self._free += 1
            self._slots.release()
            self._failed(request)
            return
        self._starts[key] = (request, started, decision)
        if command is not None:
            self._running[key] = (request, command)
            if self._paused:
                command.pause_output()

    def _output(self, request: Any, fd: int, data: bytes) -> None:
        offsets = self._offsets.setdefault(request.tid, [0, 0, 0])
        offset = offsets[fd]
        offsets[fd] = offset + len(data)
        self.listener.command_output(request, fd, data, offset)

    def _finished(
        self, key: int, request: Any, started_ms: int, decision: Any, outcome: Outcome
    ) -> None:
        self._running.pop(key, None)
        self._starts.pop(key, None)
        self._offsets.pop(request.tid, None)
        self._free += 1
        self._slots.release()
        if isinstance(outcome, Exception):
            log.error("internal error running tid=%d", request.tid, exc_info=outcome)
            self._failed(request)
            return
        ended_ms = time.time_ns() // 1_000_000
        # Start the next command first: it runs while this result is sent.
        self._start_waiting()
        try:
            self.listener.command_finished(request, outcome, started_ms, ended_ms, decision)
        except Exception:
            log.exception("internal error reporting tid=%d", request.tid)
            self._failed(request)
        self._notify()

    def _failed(self, request: Any) -> None:
        # A server bug must not pass for a clean end with a missing result.
        self._stopped_by(
            Refusal(grpc.StatusCode.INTERNAL, f"internal error running tid {request.tid}")
        )

    def _stopped_by(self, refusal: Refusal) -> None:
        first = self.stopped is None
        self.stop(refusal)
        if first:
            self.listener.execution_stopped(refusal)

    # -- waiting for a change --------------------------------------------------------

    async def _wait_for_change(self) -> None:
        if self._changed is None or self._changed.done():
            self._changed = asyncio.get_running_loop().create_future()
        await self._changed

    def _notify(self) -> None:
        if self._changed is not None and not self._changed.done():
            self._changed.set_result(None)
