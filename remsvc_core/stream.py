"""One stream's machinery: its lifecycle, attempts, writer and reader.

A :class:`Stream` is one :func:`remsvc_core.engine.run_commands` call. One task
writes the batch through the send window while the calling task reads responses and
hands each to the correlator. However it ends, :meth:`Stream.run` returns the
outcome; it raises only on asyncio cancellation.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
import uuid
from dataclasses import replace
from typing import Any

import grpc
import grpc.aio

from remsvc_core import channels, extensions, wire
from remsvc_core.commands import Command
from remsvc_core.correlation import Correlator, decode_or_malformed
from remsvc_core.grpc_workaround import (
    EOF,
    SYNTHETIC_INTERNAL,
    StatusWatch,
    drain_buffered,
    status_of,
)
from remsvc_core.hookspecs import StreamInfo
from remsvc_core.output import OutputAssembler
from remsvc_core.plugins import StreamHooks
from remsvc_core.printable import printable
from remsvc_core.results import StreamOutcome
from remsvc_core.retry import RETRYABLE_CODES, RetryPolicy
from remsvc_core.settings import ChannelSettings

__all__ = ["Phase", "Stream"]

# The engine's logger: one name for everything a stream logs.
log = logging.getLogger("remsvc_core.engine")

CANCELLED = "CANCELLED"
DEADLINE_EXCEEDED = "DEADLINE_EXCEEDED"
_LOCAL_TIMEOUT_GRACE_S = 1.0


class Phase(enum.Enum):
    """Where a stream is in its life. It only moves forward.

    From WRITING on, a command may have reached the server, so the batch is never sent
    again, with one exception: a server that keeps batches (``batch/1`` granted)
    answers a re-attach from its journal instead of running anything twice.
    """

    CONNECTING = "connecting"  # no attempt has reached the server yet
    CONNECTED = "connected"  # connected, nothing handed to the transport: may be retried
    WRITING = "writing"  # a command may have reached the server: never retried from here
    FINISHED = "finished"


class Stream:
    """One run_commands call: its attempts, its writer and reader, and its outcome."""

    def __init__(
        self,
        batch: list[Command],
        settings: ChannelSettings,
        metadata: tuple[tuple[str, str], ...],
        stream_timeout: float,
        policy: RetryPolicy,
        hooks: StreamHooks,
        wanted: extensions.Wanted,
        assembler: OutputAssembler,
    ) -> None:
        self.batch = batch
        self.encoded = wire.encode_batch(batch)
        self.settings = settings
        self.asked = wanted.metadata()
        self.metadata = (*metadata, *self.asked)
        self.wanted = wanted
        self.granted: frozenset[str] = frozenset()
        self.stream_timeout = stream_timeout
        self.policy = policy
        self.hooks = hooks
        self.loop = asyncio.get_running_loop()
        self.deadline = self.loop.time() + stream_timeout
        self.phase = Phase.CONNECTING
        self.outcome = StreamOutcome(commands=list(batch), target=settings.target)
        self.outcome.plugin_errors = hooks.errors  # hook failures land in the outcome
        self.info = StreamInfo(
            stream_id=uuid.uuid4().hex, target=settings.target, commands=tuple(batch)
        )
        self.correlator = Correlator(
            batch,
            self.outcome,
            hooks,
            self.info,
            assembler=assembler,
            usage_asked=wanted.usage,
        )
        self.writer_error: str | None = None

    async def run(self) -> StreamOutcome:
        started = self.loop.time()
        log.info(
            "stream %s: %d command(s) to %s",
            self.info.stream_id,
            len(self.batch),
            self.settings.safe_description(),
        )
        try:
            async with channels.channel_in_use(self.settings) as channel:
                await self._attempts(channel)
        except asyncio.CancelledError:
            self._set_status(CANCELLED, "cancelled by the caller")
            self._finish(started)
            raise
        self._finish(started)
        return self.outcome

    async def _attempts(self, channel: grpc.aio.Channel) -> None:
        """Try, and try again while the retry policy (or a kept batch) allows."""
        attempt = 1
        while True:
            self.outcome.attempts = attempt
            self.info = replace(self.info, attempt=attempt)
            self.window = self.correlator.begin_attempt(self.info)
            self._set_status(*await self._attempt(channel))
            delay = self._retry_delay()
            if delay is None:
                break
            if self.phase is Phase.WRITING:
                log.info(
                    "stream %s: batch %s lost its stream (%s: %s); re-attaching in %.2fs",
                    self.info.stream_id,
                    self.wanted.batch_key,
                    self.outcome.status_code,
                    printable(self.outcome.status_details),
                    delay,
                )
            else:
                log.info(
                    "stream %s: %s not reachable (%s), nothing sent; retry %d in %.2fs",
                    self.info.stream_id,
                    self.settings.target,
                    self.outcome.status_code,
                    attempt,
                    delay,
                )
            await asyncio.sleep(delay)
            attempt += 1

    def _set_status(self, code: str, details: str) -> None:
        self.outcome.status_code = code
        self.outcome.status_details = details

    def _retry_delay(self) -> float | None:
        """Seconds to wait before trying again, or None when this was the last try."""
        attempt = self.outcome.attempts
        if self._may_reattach():
            delay = self.policy.backoff_s(min(attempt, 8))
        elif (
            self.phase is Phase.WRITING  # a command may have run: never twice
            or self.outcome.status_code not in RETRYABLE_CODES
            or attempt >= self.policy.attempts
        ):
            return None
        else:
            delay = self.policy.backoff_s(attempt)
        if self.loop.time() + delay >= self.deadline:
            return None
        return delay

    def _may_reattach(self) -> bool:
        """A keyed stream may try again after writing when the server keeps its batch:
        refused because another stream holds the batch (nothing ran for this call),
        or lost on the way after the server granted batch/1 (its journal answers)."""
        if self.wanted.batch_key is None or self.outcome.complete:
            return False
        code, details = self.outcome.status_code, self.outcome.status_details
        if code == "ABORTED" and details.startswith(extensions.ATTACHED_ELSEWHERE):
            return True
        return extensions.BATCH in self.granted and code == "UNAVAILABLE"

    def _granted(self, initial_metadata: Any) -> None:
        """Note what the server granted; say once what is not (the classic behaviour)."""
        granted = extensions.granted_by(initial_metadata)
        first = not self.outcome.extensions and self.outcome.attempts == 1
        self.granted = granted
        self.outcome.extensions = sorted(granted)
        refused = [token for token in self.wanted.tokens() if token not in granted]
        if not refused or not first:
            return
        consequence = (
            "; if this stream is lost, running the batch again runs every command again "
            "(at least once)"
            if extensions.BATCH in refused
            else ""
        )
        log.info(
            "stream %s: %s did not grant %s: classic behaviour%s",
            self.info.stream_id,
            self.settings.target,
            ", ".join(refused),
            consequence,
        )

    def _finish(self, started: float) -> None:
        self.phase = Phase.FINISHED
        self.outcome.elapsed_s = self.loop.time() - started
        self.hooks.stream_finished(self.outcome, self.info)
        outcome = self.outcome
        level = logging.INFO if outcome.complete else logging.WARNING
        log.log(
            level,
            "stream %s: %s after %.3fs, %d of %d result(s), %d attempt(s)%s",
            self.info.stream_id,
            outcome.status_code,
            outcome.elapsed_s,
            len(outcome.results),
            len(outcome.commands),
            outcome.attempts,
            f"; {printable(outcome.describe_failure())}" if not outcome.complete else "",
        )

    # -- one attempt -------------------------------------------------------------

    async def _attempt(self, channel: grpc.aio.Channel) -> tuple[str, str]:
        """Open one call, write and read until it ends; returns its final status."""
        remaining = self.deadline - self.loop.time()
        if remaining <= 0:
            return DEADLINE_EXCEEDED, f"stream_timeout of {self.stream_timeout}s ran out"
        multicallable = channel.stream_stream(
            wire.METHOD_STREAM,
            request_serializer=None,  # the batch is written already encoded
            response_deserializer=decode_or_malformed,
        )
        call = multicallable(
            request_iterator=None, timeout=remaining, metadata=self.metadata, wait_for_ready=False
        )
        watch = StatusWatch(call)
        try:
            return await self._drive(call, watch)
        finally:
            # Whatever ended this attempt (including the caller's cancellation), the
            # server must learn at once that nobody reads this stream any more.
            watch.cancel()

    async def _drive(self, call: Any, watch: StatusWatch) -> tuple[str, str]:
        try:
            await asyncio.wait_for(call.wait_for_connection(), self._local_timeout())
        except grpc.aio.AioRpcError as exc:
            return status_of(exc)
        except asyncio.TimeoutError:
            return DEADLINE_EXCEEDED, self._local_timeout_details("connecting")

        if self.phase is Phase.CONNECTING:
            self.phase = Phase.CONNECTED
            self.hooks.stream_started(self.info)
        writer = self.loop.create_task(self._write_all(call, watch), name="remsvc-stream-writer")
        try:
            status = await asyncio.wait_for(self._read_all(call, watch), self._local_timeout())
        except asyncio.TimeoutError:
            status = (DEADLINE_EXCEEDED, self._local_timeout_details("waiting for results"))
        finally:
            watch.cancel()
            writer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await writer
        if status == SYNTHETIC_INTERNAL:
            status = await watch.real_status(status)
        if self.writer_error is not None:
            status = ("INTERNAL", self.writer_error)
        return status

    def _local_timeout(self) -> float:
        # The local timeout backs up the gRPC deadline (a transport that never reports
        # it must not hang the caller); the grace lets the server's own status arrive.
        return max(0.0, self.deadline - self.loop.time()) + _LOCAL_TIMEOUT_GRACE_S

    def _local_timeout_details(self, doing: str) -> str:
        return (
            f"no end of stream within stream_timeout={self.stream_timeout}s while {doing}; "
            "the client gave up and cancelled the call"
        )

    async def _write_all(self, call: Any, watch: StatusWatch) -> None:
        window, correlator, encoded = self.window, self.correlator, self.encoded
        # A keyed stream may re-attach and send again what has no answer yet.
        keep = self.wanted.batch_key is not None
        answered = self.outcome.results
        try:
            for index, command in enumerate(self.batch):
                if command.tid in answered:
                    continue  # re-attached: this one's result is in already
                data = encoded[index]
                size = len(data)
                if not window.has_room(size):
                    await window.wait_for_room(size)
                if call.done():
                    return
                correlator.sent(command.tid)
                window.sent(command.tid, size)
                # From here on the server may have the command: never retry this stream,
                # so (unless it may re-attach) its bytes are not needed again.
                self.phase = Phase.WRITING
                if not keep:
                    encoded[index] = b""
                await call.write(data)
            await call.done_writing()
        except (
            grpc.aio.AioRpcError,
            grpc.aio.InternalError,  # a half-close racing the end of the call
            grpc.aio.UsageError,
            asyncio.InvalidStateError,
        ) as exc:
            if call.done():
                return  # the call is over; the reader reports its status
            self.writer_error = f"client failed writing a command: {type(exc).__name__}: {exc}"
            log.error("stream %s: %s", self.info.stream_id, self.writer_error)
            watch.cancel()
        except Exception as exc:
            self.writer_error = f"client failed writing a command: {type(exc).__name__}: {exc}"
            log.exception("stream %s: writer failed", self.info.stream_id)
            watch.cancel()

    async def _read_all(self, call: Any, watch: StatusWatch) -> tuple[str, str]:
        """Read until the stream ends; returns its final (code, details)."""
        accept = self.correlator.accept
        try:
            if self.asked:
                # Our server sends it before reading a request; one that knows nothing
                # of extensions sends it with its first response.
                self._granted(await call.initial_metadata())
            while True:
                response = await call.read()
                if response is EOF:
                    break
                stop = accept(response)
                if stop is not None:
                    watch.cancel()
                    return CANCELLED, stop
            code = await call.code()
            return (code.name if code is not None else "UNKNOWN"), (await call.details() or "")
        except grpc.aio.AioRpcError as exc:
            status = status_of(exc)
            if status == SYNTHETIC_INTERNAL:
                stop = await drain_buffered(call, accept)
                if stop is not None:
                    return CANCELLED, stop
            return status
