"""One ``RemCmdStrm`` call on the server: negotiation, reading requests, writing responses.

A :class:`StreamCall` reads what the client asked for (docs/protocol-extensions.md)
and answers in its initial metadata, then feeds requests to an execution (its own,
or a kept batch's) and writes what comes back. It owns the outbox between the two:
when the client reads slower than commands produce, the execution is paused (no new
command starts, running commands' output is left in their pipes) until the client
catches up, so a client that never reads costs bounded memory.

Live output is gathered per command and stream and sent at most every
:data:`FLUSH_S`, in pieces of at most 1 MiB, always before that command's result.
Heartbeats go out when the call was silent for the interval while a command ran.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import time
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

import grpc
from grpc import aio

from remsvc_core import extensions
from remsvc_core.server.auth import current_identity
from remsvc_core.server.execution import Execution, Refusal
from remsvc_core.server.limits import Ticket
from remsvc_core.server.outcome import ExecResult
from remsvc_core.server.responses import (
    MAX_CHUNK,
    heartbeat_message,
    output_messages,
    result_message,
)

if TYPE_CHECKING:
    from remsvc_core.server.batches import KeptBatch
    from remsvc_core.server.service import RemSvcService

__all__ = ["StreamCall"]

log = logging.getLogger("remsvc.server")

#: Live output is sent at most this often per call (and at once past MAX_CHUNK).
FLUSH_S = 0.1
# The outbox's bounds: past HIGH the execution pauses, under LOW it resumes.
_HIGH_MESSAGES, _LOW_MESSAGES = 64, 16
_HIGH_BYTES, _LOW_BYTES = 8 << 20, 2 << 20
_STOP_WAIT_S = 5.0
# A kept batch reads what the client sent ahead of running it, so the batch goes on
# with all of it when the stream is lost (admission still happens as each starts).
_KEPT_BACKLOG = 1024


class _Pending:
    """Live output of one pipe waiting for the next flush."""

    __slots__ = ("chunks", "offset", "size")

    def __init__(self, offset: int) -> None:
        self.offset = offset
        self.chunks: list[bytes] = []
        self.size = 0


class StreamCall:
    """One RemCmdStrm call, from its metadata to its status."""

    def __init__(self, service: RemSvcService, context: aio.ServicerContext[Any, Any]) -> None:
        self.service = service
        self.context = context
        self.identity = current_identity.get()
        self.peer = context.peer()
        self.loop = asyncio.get_running_loop()
        self.asked = extensions.asked_for(context.invocation_metadata())
        self.granted = service.grant(self.asked, self.identity)
        self.live_output = extensions.OUTPUT in self.granted
        # Results carry ext.result only where it says something the client asked for;
        # heartbeats alone (asked by default) leave results classic, and cheap to read.
        self.detailed = bool(self.granted & {extensions.BATCH, extensions.OUTPUT, extensions.USAGE})
        self.batch: KeptBatch | None = None
        self.ticket: Ticket | None = None
        self.execution: Execution | None = None
        self.outbox: collections.deque[tuple[Any, int]] = collections.deque()
        self.outbox_bytes = 0
        self.paused = False
        self.unanswered: collections.Counter[int] = collections.Counter()
        # (tid, fd) -> the offset of the first byte not sent, and the chunks since.
        self.pending_output: dict[tuple[int, int], _Pending] = {}
        self.flush_handle: asyncio.TimerHandle | None = None
        self.tick_handle: asyncio.TimerHandle | None = None
        self.wakeup: asyncio.Future[None] | None = None
        self.reading = True
        self.read_failed = False
        self.refusal: Refusal | None = None
        self.closed = False
        self.last_sent = self.last_activity = time.monotonic()

    # -- the call ------------------------------------------------------------------

    async def serve(self, requests: AsyncIterator[Any]) -> AsyncIterator[Any]:
        if self.asked.asked:
            await self.context.send_initial_metadata(extensions.grant_metadata(self.granted))
        try:
            self.ticket = self.service.limits.take(self.identity)
            self._open()
        except Refusal as refusal:
            self.service.limits.release(self.ticket)
            await self.context.abort(refusal.code, refusal.details)
        reader = asyncio.create_task(self._read(requests))
        self._arm_tick()
        try:
            while True:
                while self.outbox:
                    message, size = self.outbox.popleft()
                    self.outbox_bytes -= size
                    self.last_sent = time.monotonic()
                    yield message
                    if self.paused and self._below_low_water():
                        self._resume()
                if self._done():
                    break
                self.wakeup = self.loop.create_future()
                await self.wakeup
            if self.refusal is not None and not reader.done():
                reader.cancel()  # the call ends now (idle, cancelled): read no more
                with contextlib.suppress(asyncio.CancelledError):
                    await reader
            else:
                await reader  # re-raises a failure reading the requests
            if self.refusal is not None:
                await self.context.abort(self.refusal.code, self.refusal.details)
        finally:
            await self._close(reader)

    def _open(self) -> None:
        if extensions.BATCH in self.granted:
            assert self.asked.batch_key is not None
            assert self.service.batches is not None
            self.batch = self.service.batches.attach(self.identity, self.asked.batch_key, self)
            self.execution = self.batch.execution
            return
        self.execution = Execution(
            self.service.runner,
            self,
            admit=self._admit,
            max_parallel=self.service.max_parallel,
            live_output=self.live_output,
            usage=extensions.USAGE in self.granted,
            slots=self.service.limits.slots(self.identity),
        )

    def _admit(self, request: Any) -> Any:
        return self.service.admit(request, self.context, self.identity)

    async def _read(self, requests: AsyncIterator[Any]) -> None:
        execution = self.execution
        assert execution is not None
        try:
            async for request in requests:
                self.last_activity = time.monotonic()
                self.unanswered[request.tid] += 1
                if self.batch is None:
                    execution.offer(request)
                elif not self.batch.submit(self, request):
                    self._answered(request.tid)  # a tid this call already waits for
                if self.refusal is not None:
                    break
                if self.batch is None and execution.stopped is not None:
                    break  # a kept batch's replies still come: it refuses what it cannot run
                await execution.wait_for_room(_KEPT_BACKLOG if self.batch is not None else 1)
        except Refusal as refusal:
            self.stop(refusal)
        except BaseException:
            self.read_failed = True
            raise
        finally:
            self.reading = False
            self._wake()

    def _done(self) -> bool:
        if self.refusal is not None and self.execution is not None and self._own_running() == 0:
            return True  # refused, idle or cancelled, and nothing of this call runs
        if self.reading:
            return False
        if self.read_failed or not self.unanswered:
            return True
        # Refused: what still runs may finish and be sent; nothing else will come.
        stopped = self.refusal is not None or (
            self.execution is not None and self.execution.stopped is not None
        )
        return stopped and (self.execution is None or self._own_running() == 0)

    def _answered(self, tid: int) -> None:
        # Answered tids leave the counter, so "is anything unanswered" stays O(1).
        left = self.unanswered[tid] - 1
        if left > 0:
            self.unanswered[tid] = left
        else:
            self.unanswered.pop(tid, None)

    def _own_running(self) -> int:
        assert self.execution is not None
        return sum(1 for tid in self.execution.running_tids if self.unanswered[tid])

    async def _close(self, reader: asyncio.Task[None]) -> None:
        # Reached on cancellation too (the client went away, a deadline, shutdown).
        self.closed = True
        self.service.limits.release(self.ticket)
        for handle in (self.flush_handle, self.tick_handle):
            if handle is not None:
                handle.cancel()
        if self.batch is not None:
            self.batch.detach(self, lost=bool(self.unanswered) and self.refusal is None)
        elif self.execution is not None:
            self.execution.cancel(Refusal(grpc.StatusCode.CANCELLED, "call ended"))
        if not reader.done():
            reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.wait([reader], timeout=_STOP_WAIT_S)

    # -- what the execution (or the kept batch) tells this call ----------------------

    def command_starting(self, request: Any) -> None:
        pass

    def command_output(self, request: Any, fd: int, data: bytes, offset: int) -> None:
        if self.live_output and not self.closed:
            self.deliver_output(request.tid, fd, data, offset)

    def command_finished(
        self, request: Any, result: ExecResult, started_ms: int, ended_ms: int, decision: Any
    ) -> None:
        self.service.report(
            request,
            result,
            (ended_ms - started_ms) / 1000,
            self.identity,
            self.peer,
            decision,
        )
        self.deliver_result(request, result, started_ms, ended_ms)

    def command_cancelled(self, request: Any, decision: Any, duration_s: float) -> None:
        reason = decision.reason if decision is not None else ""
        self.service.audit.cancelled(request, self.identity, self.peer, reason, duration_s)

    def execution_stopped(self, refusal: Refusal) -> None:
        self.stop(refusal)

    # -- the outbox ------------------------------------------------------------------

    def deliver_output(self, tid: int, fd: int, data: bytes, offset: int) -> None:
        """Gather live output; it goes out at the next flush (or now, past MAX_CHUNK)."""
        key = (tid, fd)
        pending = self.pending_output.get(key)
        if pending is None:
            pending = self.pending_output[key] = _Pending(offset)
        pending.chunks.append(data)
        pending.size += len(data)
        if pending.size >= MAX_CHUNK:
            self._flush_output(key)
        elif self.flush_handle is None:
            self.flush_handle = self.loop.call_later(FLUSH_S, self._flush_all)

    def deliver_result(
        self,
        request: Any,
        result: ExecResult,
        started_ms: int,
        ended_ms: int,
        *,
        replayed: bool = False,
        interrupted: bool = False,
    ) -> None:
        """Send a command's result (after the rest of its live output)."""
        if self.closed:
            return
        tid = request.tid
        for fd in (1, 2):
            if (tid, fd) in self.pending_output:
                self._flush_output((tid, fd))
        message = result_message(
            tid,
            request.hsh,
            result,
            detailed=self.detailed,
            started_ms=started_ms,
            ended_ms=ended_ms,
            replayed=replayed,
            interrupted=interrupted,
        )
        self._answered(tid)
        self.last_activity = time.monotonic()
        self._enqueue(message, len(result.out) + len(result.err) + 64)

    def stop(self, refusal: Refusal) -> None:
        """End the call with ``refusal`` once what runs for it was sent."""
        if self.refusal is None:
            self.refusal = refusal
        self._wake()

    def _flush_all(self) -> None:
        self.flush_handle = None
        for key in list(self.pending_output):
            self._flush_output(key)

    def _flush_output(self, key: tuple[int, int]) -> None:
        pending = self.pending_output.pop(key)
        chunks = pending.chunks
        # Chunks are joined once, here: appending each to a growing buffer copied
        # every byte twice more on the way to a message.
        data = chunks[0] if len(chunks) == 1 else b"".join(chunks)
        for message in output_messages(key[0], key[1], data, pending.offset):
            self._enqueue(message, len(message.ext.output.data) + 32)

    def _enqueue(self, message: Any, size: int) -> None:
        self.outbox.append((message, size))
        self.outbox_bytes += size
        if not self.paused and (
            len(self.outbox) > _HIGH_MESSAGES or self.outbox_bytes > _HIGH_BYTES
        ):
            self._pause()
        self._wake()

    def _below_low_water(self) -> bool:
        return len(self.outbox) <= _LOW_MESSAGES and self.outbox_bytes <= _LOW_BYTES

    def _pause(self) -> None:
        # The client reads slower than commands produce: hold the commands back.
        self.paused = True
        if self.execution is not None:
            self.execution.pause()

    def _resume(self) -> None:
        self.paused = False
        if self.execution is not None:
            self.execution.resume()

    def _wake(self) -> None:
        if self.wakeup is not None and not self.wakeup.done():
            self.wakeup.set_result(None)

    # -- heartbeats and the idle timeout -----------------------------------------------

    def _arm_tick(self) -> None:
        intervals = []
        if extensions.HEARTBEAT in self.granted and self.asked.heartbeat_ms:
            intervals.append(self.asked.heartbeat_ms / 1000)
        idle = self.service.idle_timeout_s
        if idle:
            intervals.append(idle)
        if intervals:
            self.tick_handle = self.loop.call_later(min(intervals) / 2, self._tick)

    def _tick(self) -> None:
        self.tick_handle = None
        if self.closed:
            return
        now = time.monotonic()
        execution = self.execution
        running = execution.started_at if execution is not None else {}
        mine = {tid: started for tid, started in running.items() if self.unanswered[tid]}
        interval_ms = self.asked.heartbeat_ms
        if (
            extensions.HEARTBEAT in self.granted
            and interval_ms
            and mine
            and (now - self.last_sent) * 1000 >= interval_ms
        ):
            elapsed = {tid: round((now - started) * 1000) for tid, started in mine.items()}
            self._enqueue(heartbeat_message(elapsed), 16 * len(elapsed) + 16)
        idle = self.service.idle_timeout_s
        waiting = execution is not None and execution.queued  # for a command slot
        if (
            idle
            and not mine
            and not waiting
            and not self.outbox
            and now - self.last_activity >= idle
        ):
            self.stop(
                Refusal(
                    grpc.StatusCode.DEADLINE_EXCEEDED,
                    f"stream idle for {idle:g}s with nothing running "
                    "(server setting idle_stream_timeout_s)",
                )
            )
            return
        self._arm_tick()
