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
import enum
import logging
import math
import os
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from typing import Any

import grpc
import grpc.aio

from remsvc_core import channels, extensions, plugins, wire
from remsvc_core.commands import Command, as_batch
from remsvc_core.correlation import Correlator, decode_or_malformed
from remsvc_core.errors import SettingsError
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
from remsvc_core.results import StreamOutcome
from remsvc_core.settings import ChannelSettings, check_timeout
from remsvc_core.synchronous import synchronous

__all__ = ["NO_RETRY", "RETRYABLE_CODES", "RetryPolicy", "run_commands", "run_commands_sync"]

log = logging.getLogger(__name__)

#: gRPC codes that mean "try again later": retried, but only before the first write.
RETRYABLE_CODES = frozenset({"UNAVAILABLE", "RESOURCE_EXHAUSTED"})
CANCELLED = "CANCELLED"
DEADLINE_EXCEEDED = "DEADLINE_EXCEEDED"
#: Asked by default: silent long commands keep proxies from dropping the connection.
DEFAULT_HEARTBEAT_S = 30.0
_LOCAL_TIMEOUT_GRACE_S = 1.0


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


@dataclass(frozen=True)
class Extras:
    """What a stream asks of the server beyond the classic protocol (see
    docs/protocol-extensions.md); a server that grants nothing gets a classic stream."""

    batch_key: str | None = None
    output: bool = False
    heartbeat_s: float | None = None
    usage: bool = False
    spill_dir: str | os.PathLike[str] | None = None
    spill_bytes: int | None = None

    def metadata(self) -> list[tuple[str, str]]:
        return extensions.request_metadata(
            batch_key=self.batch_key,
            output=self.output,
            heartbeat_s=self.heartbeat_s,
            usage=self.usage,
        )


class _Stream:
    """One run_commands call: its attempts, its writer and reader, and its outcome."""

    def __init__(
        self,
        batch: list[Command],
        settings: ChannelSettings,
        metadata: tuple[tuple[str, str], ...],
        stream_timeout: float,
        policy: RetryPolicy,
        hooks: StreamHooks,
        extras: Extras,
    ) -> None:
        self.batch = batch
        self.encoded = wire.encode_batch(batch)
        self.settings = settings
        self.asked = extras.metadata()
        self.metadata = (*metadata, *self.asked)
        self.extras = extras
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
            assembler=OutputAssembler(spill_dir=extras.spill_dir, spill_bytes=extras.spill_bytes),
            usage_asked=extras.usage,
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
            channel = await channels.get_channel(self.settings)
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
                        self.extras.batch_key,
                        self.outcome.status_code,
                        self.outcome.status_details,
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
        except asyncio.CancelledError:
            self._set_status(CANCELLED, "cancelled by the caller")
            self._finish(started)
            raise
        self._finish(started)
        return self.outcome

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
        if self.extras.batch_key is None or self.outcome.complete:
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
        refused = [token for token in extensions.tokens_asked(self.asked) if token not in granted]
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
            f"; {outcome.describe_failure()}" if not outcome.complete else "",
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
        keep = self.extras.batch_key is not None
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


async def run_commands(
    commands: Any,
    settings: ChannelSettings,
    *,
    stream_timeout: float = 3600.0,
    metadata: Iterable[tuple[str, str]] = (),
    hooks: Sequence[object] = (),
    retry: RetryPolicy | None = None,
    default_src: str = "",
    batch_key: str | None = None,
    follow: bool = False,
    heartbeat_s: float | None = DEFAULT_HEARTBEAT_S,
    usage: bool = False,
    spill_dir: str | os.PathLike[str] | None = None,
    spill_bytes: int | None = None,
) -> StreamOutcome:
    """Run a batch of commands over one RemCmdStrm and return everything that came back.

    ``commands`` is a list of command dicts (or strings), validated before anything is
    sent, or an already validated ``list[Command]``. ``stream_timeout`` bounds the whole
    call, retries included (gRPC deadline and a local timeout). ``metadata`` is added to
    the call; the settings' bearer token always wins for ``authorization``. ``hooks``
    are plugin objects for this stream only, on top of the process-wide ones.
    ``retry`` (default ``RetryPolicy()``) applies only while no command was written.

    Beyond the classic protocol (docs/protocol-extensions.md; a server that grants
    nothing, like the upstream one, gives today's behaviour and the log says so once):

    - ``batch_key`` names the batch so the server keeps it when the stream is lost;
      running the same key again re-attaches (finished results are replayed, nothing
      runs twice), and the engine re-attaches by itself after a dropped connection;
    - ``follow`` asks for live output: ``remsvc_output`` hooks get each chunk as it is
      printed (also asked whenever a plugin implements that hook);
    - ``heartbeat_s`` asks the server to say which commands still run whenever the
      stream is otherwise silent that long (``None``: do not ask);
    - ``usage`` asks what each command cost (``CommandResult.usage``);
    - ``spill_dir`` keeps outputs larger than ``spill_bytes`` (default 8 MiB) in files
      there instead of memory (``CommandResult.out_file``); implies live output.

    Raises :class:`CommandValidationError`, :class:`SettingsError` or
    :class:`~remsvc_core.errors.PluginError` for bad input, before sending anything.
    A failing stream does not raise: the outcome says how it ended.
    """
    if not isinstance(settings, ChannelSettings):
        raise SettingsError(
            f"settings must be a ChannelSettings, got {type(settings).__name__}; build one "
            "with remsvc_core.settings_from_fields(host, port, extras)"
        )
    batch = as_batch(commands, default_src=default_src)
    timeout = check_timeout(stream_timeout)
    call_metadata = tuple(settings.call_metadata(metadata))
    policy = retry if retry is not None else RetryPolicy()
    if not isinstance(policy, RetryPolicy):
        raise SettingsError(f"retry must be a RetryPolicy, got {type(policy).__name__}")
    if not plugins.entry_points_loaded():
        # The first stream in a process imports the installed plugins: off the loop.
        await asyncio.to_thread(plugins.get_plugin_manager)
    stream_hooks = StreamHooks(hooks)
    extras = Extras(
        batch_key=None if batch_key is None else extensions.check_batch_key(batch_key),
        output=follow or spill_dir is not None or stream_hooks.implemented("remsvc_output"),
        heartbeat_s=heartbeat_s,
        usage=usage,
        spill_dir=spill_dir,
        spill_bytes=spill_bytes,
    )
    stream = _Stream(batch, settings, call_metadata, timeout, policy, stream_hooks, extras)
    return await stream.run()


run_commands_sync = synchronous(
    run_commands,
    doc=""":func:`run_commands` for code without an event loop (scripts, the CLI, notebooks).

    Same arguments and result. Inside a thread whose event loop is already running
    (Jupyter), the stream runs on a fresh loop in a worker thread, because the calling
    thread cannot wait on itself.
    """,
)
