"""The streaming engine: one RemCmdStrm per batch, every result that arrives kept.

:func:`run_commands` validates the batch, opens one bidirectional stream, writes the
commands from one task while the calling task reads responses, correlates them by
``tid`` (never by order) and calls the plugin hooks for each result as it arrives.
However the stream ends (server finished, server gone, deadline, a plugin stopping
it) the caller gets a :class:`~remsvc_core.results.StreamOutcome`; it raises only
for bad input before anything was sent, and on asyncio cancellation.

Nothing is ever sent twice: a failed attempt is retried only when not a single
command had been handed to the transport yet.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from typing import Any

import grpc
import grpc.aio

from remsvc_core import channels, plugins, wire
from remsvc_core.commands import Command, validate_commands
from remsvc_core.errors import CommandValidationError, SettingsError
from remsvc_core.hookspecs import StreamInfo
from remsvc_core.plugins import StreamHooks
from remsvc_core.results import CommandResult, StreamOutcome, UnexpectedResponse
from remsvc_core.settings import ChannelSettings, check_timeout
from remsvc_core.synchronous import synchronous

__all__ = ["NO_RETRY", "RETRYABLE_CODES", "RetryPolicy", "run_commands", "run_commands_sync"]

log = logging.getLogger(__name__)

#: gRPC codes that mean "try again later": retried, but only before the first write.
RETRYABLE_CODES = frozenset({"UNAVAILABLE", "RESOURCE_EXHAUSTED"})
CANCELLED = "CANCELLED"
DEADLINE_EXCEEDED = "DEADLINE_EXCEEDED"
# The local timeout backs up the gRPC deadline (a transport that never reports it must
# not hang the caller); the grace lets the server's own status arrive first.
_LOCAL_TIMEOUT_GRACE_S = 1.0
# The writer keeps at most this much unanswered on the wire. Far below HTTP/2's
# 64 KiB default window, so a write never waits on flow control: a write pending
# when the server ends the stream makes grpc.aio replace the server's status with
# INTERNAL and drop responses it had already received (see _StatusWatch). Servers
# answer as commands end, so the window moves; if not one answer came within the
# patience, the rest is sent regardless (see _Stream._wait_for_window).
_MAX_IN_FLIGHT_COMMANDS = 256
_MAX_IN_FLIGHT_BYTES = 32 * 1024
# A full window is refilled only once answers brought it down to this low-water mark,
# in one burst: waking the writer for every answer made it write one command per
# event-loop pass, which cost more client CPU than the rest of the engine together.
_REFILL_AT_COMMANDS = _MAX_IN_FLIGHT_COMMANDS // 2
_REFILL_AT_BYTES = _MAX_IN_FLIGHT_BYTES // 2
_FIRST_ANSWER_PATIENCE_S = 10.0
_EOF: Any = grpc.aio.EOF  # type: ignore[attr-defined]  # missing from grpc-stubs


@dataclass(frozen=True)
class RetryPolicy:
    """How often to try reaching the server before the first command is written.

    ``attempts`` counts the first try. Between tries the engine waits
    ``initial_backoff_s``, then multiplies by ``multiplier`` up to ``max_backoff_s``.
    Retries never go past the stream's timeout, and never happen once a command has
    been written: a command must not run twice.
    """

    attempts: int = 4
    initial_backoff_s: float = 0.5
    max_backoff_s: float = 8.0
    multiplier: float = 2.0

    def __post_init__(self) -> None:
        if (
            isinstance(self.attempts, bool)
            or not isinstance(self.attempts, int)
            or self.attempts < 1
        ):
            raise SettingsError(f"RetryPolicy.attempts must be an int >= 1, got {self.attempts!r}")
        for name in ("initial_backoff_s", "max_backoff_s"):
            value = getattr(self, name)
            if not _finite_number(value) or value < 0:
                raise SettingsError(f"RetryPolicy.{name} must be a number >= 0, got {value!r}")
        if not _finite_number(self.multiplier) or self.multiplier < 1:
            raise SettingsError(f"RetryPolicy.multiplier must be >= 1, got {self.multiplier!r}")

    def backoff_s(self, retry_number: int) -> float:
        """Seconds to wait before retry ``retry_number`` (1 for the first retry)."""
        delay: float = self.initial_backoff_s * self.multiplier ** (retry_number - 1)
        return min(self.max_backoff_s, delay)


def _finite_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


NO_RETRY = RetryPolicy(attempts=1)


@dataclass(frozen=True, slots=True)
class _Malformed:
    """Stands in for response bytes that are not a RemResMsg at all."""

    size: int
    error: str


def _decode_response(data: bytes) -> wire.ResponseFields | _Malformed:
    # grpc would log and hand back None for a deserializer error; keep the reason.
    try:
        return wire.read_response(data)
    except Exception as exc:
        return _Malformed(len(data), f"{type(exc).__name__}: {exc}")


def _as_batch(commands: Any, default_src: str) -> tuple[list[Command], list[bytes]]:
    """The validated batch and each command encoded for the wire, in the same order.

    Encoded once, here: the window needs each command's size, and the call then
    writes these bytes as they are (no request serializer).
    """
    if (
        isinstance(commands, Sequence)
        and not isinstance(commands, (str, bytes))
        and commands
        and all(isinstance(item, Command) for item in commands)
    ):
        batch = list(commands)
        tids = [command.tid for command in batch]
        if len(set(tids)) != len(tids) or min(tids) < 1 or max(tids) > 2**31 - 1:
            raise CommandValidationError(
                "already-validated commands must have distinct tids between 1 and 2**31-1; "
                "pass the raw command dicts instead and let remsvc number them"
            )
    else:
        batch = validate_commands(commands, default_src=default_src)
    encoded: list[bytes] = []
    for command in batch:
        try:
            encoded.append(wire.encode_command(command))
        except UnicodeEncodeError as exc:
            raise CommandValidationError(
                f"commands[{command.tid - 1}].cmd (tid {command.tid}) cannot be encoded as "
                f"UTF-8 ({exc.reason} at position {exc.start}); remove the lone surrogate"
            ) from exc
    return batch, encoded


def _status_of(exc: grpc.aio.AioRpcError) -> tuple[str, str]:
    # code() and details() only: debug_error_string() was seen to block forever.
    code = exc.code()
    return (code.name if code is not None else "UNKNOWN"), (exc.details() or "")


# grpc.aio overwrites the server's status with this one when a write was in flight as
# the server ended the stream (grpc/grpc#36066): a denied command would then read as
# INTERNAL instead of PERMISSION_DENIED.
_SYNTHETIC_INTERNAL = ("INTERNAL", "Internal error from Core")
_REAL_STATUS_POLLS = 50
# Responses Core already holds arrive at once; this only bounds a transport gone quiet.
_DRAIN_WAIT_S = 2.0
_REAL_STATUS_POLL_S = 0.02


def _value_now(awaitable: Any) -> Any:
    """The result of an awaitable that completes without suspending, else None."""
    try:
        awaitable.send(None)
    except StopIteration as finished:
        return finished.value
    except Exception:
        return None
    awaitable.close()
    return None


class _StatusWatch:
    """Finds the server's final status of a call even when grpc.aio overwrote it.

    Two orders occur. Server status first, failed write second: the status is
    replaced, but the done-callback ran in between with the server's status in place
    (``code()`` returns at once then) and kept it. Failed write first: the callback
    saw the synthetic status, and the server's arrives a moment later in its place,
    which :meth:`real_status` waits for.
    """

    def __init__(self, call: Any) -> None:
        self._call = call
        self._cancelled_locally = False
        self._real: tuple[str, str] | None = None
        call.add_done_callback(self._on_done)

    def _on_done(self, call: Any) -> None:
        # Runs inside grpc's status bookkeeping: it must never raise.
        try:
            if self._cancelled_locally or self._real is not None:
                return
            code = _value_now(call.code())
            details = _value_now(call.details())
            if code is None:
                return
            status = (code.name, details or "")
            if status != _SYNTHETIC_INTERNAL:
                self._real = status
        except Exception:  # pragma: no cover - defensive
            log.debug("could not read a call's status in its done callback", exc_info=True)

    def cancel(self) -> None:
        """Cancel the call (if still running) without mistaking that for its status."""
        if not self._call.done():
            self._cancelled_locally = True
            self._call.cancel()

    async def real_status(self, reported: tuple[str, str]) -> tuple[str, str]:
        """The server's status if it is (or soon becomes) known, else ``reported``."""
        # Done-callbacks run once, for the first status: when the failed write came
        # first, the server's status replaces the synthetic one a moment later.
        for _ in range(_REAL_STATUS_POLLS):
            if self._real is not None:
                return self._real
            code = await self._call.code()
            current = (code.name if code is not None else "UNKNOWN", await self._call.details())
            if current != _SYNTHETIC_INTERNAL:
                return (current[0], current[1] or "")
            await asyncio.sleep(_REAL_STATUS_POLL_S)
        return reported


class _Stream:
    """One run_commands call: its state, attempts and hook calls."""

    def __init__(
        self,
        batch: list[Command],
        encoded: list[bytes],
        settings: ChannelSettings,
        metadata: tuple[tuple[str, str], ...],
        stream_timeout: float,
        policy: RetryPolicy,
        hooks: StreamHooks,
    ) -> None:
        self.batch = batch
        self.by_tid = {command.tid: command for command in batch}
        self.settings = settings
        self.metadata = metadata
        self.stream_timeout = stream_timeout
        self.policy = policy
        self.hooks = hooks
        # Most streams have no remsvc_result hook: then a result costs no hook call.
        self.result_hooked = hooks.implemented("remsvc_result")
        self.loop = asyncio.get_running_loop()
        self.outcome = StreamOutcome(commands=list(batch), target=settings.target)
        self.outcome.plugin_errors = hooks.errors  # hook failures land in the outcome
        self.info = StreamInfo(
            stream_id=uuid.uuid4().hex, target=settings.target, commands=tuple(batch)
        )
        self.encoded = encoded
        # tid -> time.monotonic() when written, for every tid sent (the latency's start)
        self.sent_at: dict[int, float] = {}
        self.in_flight: dict[int, int] = {}  # tid -> size, written and not yet answered
        self.in_flight_bytes = 0
        self.window_moved = asyncio.Event()
        self.writer_waiting = False  # the writer waits for window_moved
        self.window_unbounded = False
        self.write_started = False
        self.started_hook_fired = False
        self.writer_error: str | None = None

    def _set_status(self, code: str, details: str) -> None:
        self.outcome.status_code = code
        self.outcome.status_details = details

    async def run(self) -> StreamOutcome:
        started = self.loop.time()
        deadline = started + self.stream_timeout
        log.info(
            "stream %s: %d command(s) to %s",
            self.info.stream_id,
            len(self.batch),
            self.settings.safe_description(),
        )
        try:
            channel = await channels.get_channel(self.settings)
            for attempt in range(1, self.policy.attempts + 1):
                self.outcome.attempts = attempt
                self.info = replace(self.info, attempt=attempt)
                delay = await self._attempt(channel, deadline)
                if delay is None:
                    break
                log.info(
                    "stream %s: %s not reachable (%s), nothing sent; retry %d in %.2fs",
                    self.info.stream_id,
                    self.settings.target,
                    self.outcome.status_code,
                    attempt,
                    delay,
                )
                await asyncio.sleep(delay)
        except asyncio.CancelledError:
            self._set_status(CANCELLED, "cancelled by the caller")
            self._finish(started)
            raise
        self._finish(started)
        return self.outcome

    def _finish(self, started: float) -> None:
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
            f"; {outcome.describe_failure()}" if not outcome.complete else "",
        )

    async def _attempt(self, channel: grpc.aio.Channel, deadline: float) -> float | None:
        """Run one attempt; return the delay before the next one, or None when done."""
        remaining = deadline - self.loop.time()
        if remaining <= 0:
            self._set_status(DEADLINE_EXCEEDED, f"stream_timeout of {self.stream_timeout}s ran out")
            return None
        multicallable = channel.stream_stream(
            wire.METHOD_STREAM,
            request_serializer=None,  # the batch is written already encoded
            response_deserializer=_decode_response,
        )
        call = multicallable(
            request_iterator=None, timeout=remaining, metadata=self.metadata, wait_for_ready=False
        )
        watch = _StatusWatch(call)
        try:
            return await self._drive(call, watch, deadline)
        finally:
            # Whatever ended this attempt (including the caller's cancellation), the
            # server must learn at once that nobody reads this stream any more.
            watch.cancel()

    async def _drive(self, call: Any, watch: _StatusWatch, deadline: float) -> float | None:
        try:
            await asyncio.wait_for(
                call.wait_for_connection(),
                timeout=max(0.0, deadline - self.loop.time()) + _LOCAL_TIMEOUT_GRACE_S,
            )
        except grpc.aio.AioRpcError as exc:
            code, details = _status_of(exc)
            self._set_status(code, details)
            return self._retry_delay(code, deadline)
        except asyncio.TimeoutError:
            self._set_status(DEADLINE_EXCEEDED, self._local_timeout_details("connecting"))
            return None

        if not self.started_hook_fired:
            self.started_hook_fired = True
            self.hooks.stream_started(self.info)
        writer = self.loop.create_task(self._write_all(call, watch), name="remsvc-stream-writer")
        try:
            status = await asyncio.wait_for(
                self._read_all(call, watch),
                timeout=max(0.0, deadline - self.loop.time()) + _LOCAL_TIMEOUT_GRACE_S,
            )
        except asyncio.TimeoutError:
            status = (DEADLINE_EXCEEDED, self._local_timeout_details("waiting for results"))
        finally:
            watch.cancel()
            writer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await writer
        if status == _SYNTHETIC_INTERNAL:
            status = await watch.real_status(status)
        if self.writer_error is not None:
            status = ("INTERNAL", self.writer_error)
        self._set_status(*status)
        if self.write_started:
            return None
        # The call failed before the first write began: nothing ran on the server.
        return self._retry_delay(self.outcome.status_code, deadline)

    def _retry_delay(self, code: str, deadline: float) -> float | None:
        attempt = self.outcome.attempts
        if code not in RETRYABLE_CODES or attempt >= self.policy.attempts:
            return None
        delay = self.policy.backoff_s(attempt)
        if self.loop.time() + delay >= deadline:
            return None
        return delay

    def _local_timeout_details(self, doing: str) -> str:
        return (
            f"no end of stream within stream_timeout={self.stream_timeout}s while {doing}; "
            "the client gave up and cancelled the call"
        )

    async def _write_all(self, call: Any, watch: _StatusWatch) -> None:
        sent_at, in_flight, encoded = self.sent_at, self.in_flight, self.encoded
        monotonic = time.monotonic
        try:
            for index, command in enumerate(self.batch):
                data = encoded[index]
                size = len(data)
                # The window (inline: this runs once per command): wait while it is full.
                while (
                    in_flight
                    and not self.window_unbounded
                    and (
                        len(in_flight) >= _MAX_IN_FLIGHT_COMMANDS
                        or self.in_flight_bytes + size > _MAX_IN_FLIGHT_BYTES
                    )
                ):
                    await self._wait_for_window()
                if call.done():
                    return
                tid = command.tid
                sent_at[tid] = monotonic()
                in_flight[tid] = size
                self.in_flight_bytes += size
                # From here on the server may have the command: never retry this stream,
                # so its bytes are not needed again.
                self.write_started = True
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

    def _refill_due(self) -> bool:
        return (
            len(self.in_flight) <= _REFILL_AT_COMMANDS and self.in_flight_bytes <= _REFILL_AT_BYTES
        )

    async def _wait_for_window(self) -> None:
        """Wait until answers bring the window down to its low-water mark."""
        self.window_moved.clear()
        self.writer_waiting = True
        if self.outcome.results or self.outcome.unexpected:
            await self.window_moved.wait()  # the server answers as it goes
            return
        # Not one answer yet: either the first command runs long, or the server
        # wants the whole batch before it answers (RemSvc servers do not, but a
        # hang until stream_timeout would be the worst outcome). After a while,
        # send the rest without a window.
        try:
            await asyncio.wait_for(self.window_moved.wait(), _FIRST_ANSWER_PATIENCE_S)
        except asyncio.TimeoutError:
            if self.outcome.results or self.outcome.unexpected:
                return  # answers come, only not yet down to the low-water mark: wait on
            self.writer_waiting = False
            self.window_unbounded = True
            log.info(
                "stream %s: no answer after %.0fs with %d command(s) in flight; "
                "sending the rest of the batch without waiting",
                self.info.stream_id,
                _FIRST_ANSWER_PATIENCE_S,
                len(self.in_flight),
            )

    async def _read_all(self, call: Any, watch: _StatusWatch) -> tuple[str, str]:
        """Read until the stream ends; returns its final (code, details)."""
        try:
            while True:
                response = await call.read()
                if response is _EOF:
                    break
                stop = self._accept(response)
                if stop is not None:
                    watch.cancel()
                    return CANCELLED, stop
            code = await call.code()
            return (code.name if code is not None else "UNKNOWN"), (await call.details() or "")
        except grpc.aio.AioRpcError as exc:
            status = _status_of(exc)
            if status == _SYNTHETIC_INTERNAL:
                stop = await self._drain_buffered(call)
                if stop is not None:
                    return CANCELLED, stop
            return status

    async def _drain_buffered(self, call: Any) -> str | None:
        """Accept the responses Core still holds after grpc.aio failed the call locally.

        A write pending as the server ends the stream makes grpc.aio mark the call done
        with the synthetic INTERNAL status, and ``read()`` then returns nothing more,
        although the server sent (and Core received) further responses before its
        status. The call's own reader still returns them, then EOF; without this, about
        half the streams ended that way lost results (tests/reliability).
        """
        read = getattr(call, "_read", None)  # grpc.aio internals; absent -> nothing to do
        if read is None:
            return None
        while True:
            try:
                response = await asyncio.wait_for(read(), _DRAIN_WAIT_S)
            except (grpc.aio.AioRpcError, asyncio.TimeoutError):
                return None
            if response is _EOF:
                return None
            stop = self._accept(response)
            if stop is not None:
                return stop

    def _accept(self, response: wire.ResponseFields | _Malformed | None) -> str | None:
        """Record one response and call its hooks; returns why to stop, if a plugin said so.

        Runs once per result: kept to the few steps every result needs.
        """
        now = time.monotonic()
        if not isinstance(response, tuple):
            self._malformed(response)
            return None
        tid, rc, out, err, hsh, replaced = response
        sent = self.sent_at.get(tid)  # only tids of this batch are ever sent
        results = self.outcome.results
        if sent is None or tid in results:
            reason = "unknown" if sent is None else "duplicate"
            self._unexpected(UnexpectedResponse(tid, reason, rc, out, err))
            return None
        result = CommandResult(
            tid=tid,
            rc=rc,
            out=out,
            err=err,
            hsh=hsh,
            cmd=self.by_tid[tid].cmd,
            latency_s=max(0.0, now - sent),
            decode_replaced=replaced,
        )
        results[tid] = result
        answered = self.in_flight.pop(tid, None)
        if answered is not None:
            self.in_flight_bytes -= answered
            if self.writer_waiting and self._refill_due():
                self.writer_waiting = False
                self.window_moved.set()
        if replaced:
            log.warning(
                "stream %s: tid %d output was not valid UTF-8; invalid bytes replaced by U+FFFD",
                self.info.stream_id,
                tid,
            )
        if not self.result_hooked:
            return None
        stop = self.hooks.result(result, self.info)
        if stop is None:
            return None
        who, exc = stop
        return f"stopped by {who} at tid {tid}: {exc}"

    def _malformed(self, response: _Malformed | None) -> None:
        error = response.error if response is not None else "no message"
        size = response.size if response is not None else 0
        self._unexpected(
            UnexpectedResponse(
                tid=0,
                reason="malformed",
                rc=0,
                out="",
                err=f"{size} byte(s) that do not parse as RemResMsg: {error}",
            )
        )

    def _unexpected(self, response: UnexpectedResponse) -> None:
        self.outcome.unexpected.append(response)
        log.warning(
            "stream %s: unexpected response (%s) for tid %d",
            self.info.stream_id,
            response.reason,
            response.tid,
        )
        self.hooks.unexpected_response(response, self.info)


async def run_commands(
    commands: Any,
    settings: ChannelSettings,
    *,
    stream_timeout: float = 3600.0,
    metadata: Iterable[tuple[str, str]] = (),
    hooks: Sequence[object] = (),
    retry: RetryPolicy | None = None,
    default_src: str = "",
) -> StreamOutcome:
    """Run a batch of commands over one RemCmdStrm and return everything that came back.

    ``commands`` is a list of command dicts (or strings), validated before anything is
    sent, or an already validated ``list[Command]``. ``stream_timeout`` bounds the whole
    call, retries included (gRPC deadline and a local timeout). ``metadata`` is added to
    the call; the settings' bearer token always wins for ``authorization``. ``hooks``
    are plugin objects for this stream only, on top of the process-wide ones.
    ``retry`` (default ``RetryPolicy()``) applies only while no command was written.

    Raises :class:`CommandValidationError`, :class:`SettingsError` or
    :class:`~remsvc_core.errors.PluginError` for bad input, before sending anything.
    A failing stream does not raise: the outcome says how it ended.
    """
    if not isinstance(settings, ChannelSettings):
        raise SettingsError(
            f"settings must be a ChannelSettings, got {type(settings).__name__}; build one "
            "with remsvc_core.settings_from_fields(host, port, extras)"
        )
    batch, encoded = _as_batch(commands, default_src)
    timeout = check_timeout(stream_timeout)
    call_metadata = tuple(settings.call_metadata(metadata))
    policy = retry if retry is not None else RetryPolicy()
    if not isinstance(policy, RetryPolicy):
        raise SettingsError(f"retry must be a RetryPolicy, got {type(policy).__name__}")
    if not plugins.entry_points_loaded():
        # The first stream in a process imports the installed plugins: off the loop.
        await asyncio.to_thread(plugins.get_plugin_manager)
    stream_hooks = StreamHooks(hooks)
    stream = _Stream(batch, encoded, settings, call_metadata, timeout, policy, stream_hooks)
    return await stream.run()


run_commands_sync = synchronous(
    run_commands,
    doc=""":func:`run_commands` for code without an event loop (scripts, the CLI, notebooks).

    Same arguments and result. Inside a thread whose event loop is already running
    (Jupyter), the stream runs on a fresh loop in a worker thread, because the calling
    thread cannot wait on itself.
    """,
)
