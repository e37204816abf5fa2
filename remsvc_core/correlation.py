"""Matching responses to commands by ``tid``, and keeping what makes no sense aside.

Each response read off a stream goes through :meth:`Correlator.accept`: the first
answer for a tid that was sent becomes a :class:`~remsvc_core.results.CommandResult`
in the outcome and is handed to the ``remsvc_result`` hooks; a repeated tid, a tid
never sent, or bytes that are no response at all become an
:class:`~remsvc_core.results.UnexpectedResponse` and never overwrite a real result.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from dataclasses import dataclass
from typing import Any

from remsvc_core import wire
from remsvc_core.commands import Command
from remsvc_core.hookspecs import StreamInfo
from remsvc_core.output import STDERR, STDOUT, OutputAssembler
from remsvc_core.plugins import StreamHooks
from remsvc_core.results import UNREPORTED, CommandResult, StreamOutcome, UnexpectedResponse, Usage
from remsvc_core.send_window import SendWindow

__all__ = ["Correlator", "Malformed", "decode_or_malformed"]

log = logging.getLogger("remsvc_core.engine")

# A faulty (or hostile) server can send any number of responses nobody asked for; in
# the Airflow triggerer that memory is every deferred task's. Only the first few are
# kept, their text cut short, and past a bound the client ends the stream (every real
# result stays).
KEPT_UNEXPECTED = 100
KEPT_TEXT_CHARS = 1024
MAX_UNEXPECTED = 1000


@dataclass(frozen=True, slots=True)
class Malformed:
    """Stands in for response bytes that are not a RemResMsg at all."""

    size: int
    error: str


def decode_or_malformed(data: bytes) -> wire.ResponseFields | Malformed:
    """The call's response deserializer: grpc would log a deserializer error and hand
    back None; this keeps the reason."""
    try:
        return wire.read_response(data)
    except Exception as exc:
        return Malformed(len(data), f"{type(exc).__name__}: {exc}")


class Correlator:
    """Records one stream's responses in its outcome; knows what was sent and when."""

    def __init__(
        self,
        batch: list[Command],
        outcome: StreamOutcome,
        hooks: StreamHooks,
        info: StreamInfo,
        *,
        assembler: OutputAssembler | None = None,
        usage_asked: bool = False,
    ) -> None:
        self._by_tid = {command.tid: command for command in batch}
        self._outcome = outcome
        self._hooks = hooks
        self._window = SendWindow(label=info.stream_id)
        self._assembler = assembler if assembler is not None else OutputAssembler()
        self._usage_asked = usage_asked
        # Most streams have no remsvc_result hook: then a result costs no hook call.
        self._result_hooked = hooks.implemented("remsvc_result")
        self._sent_at: dict[int, float] = {}  # tid -> time.monotonic() when first written
        #: Which stream and attempt the hooks are told about; the engine updates it.
        self.info = info
        #: How many heartbeats arrived (heartbeat/1).
        self.heartbeats = 0

    def begin_attempt(self, info: StreamInfo) -> SendWindow:
        """A new attempt (a retry or a re-attach) writes through a fresh window."""
        self.info = info
        self._window = SendWindow(label=info.stream_id)
        return self._window

    def sent(self, tid: int) -> None:
        """The command ``tid`` was handed to the transport now (its latency starts)."""
        self._sent_at.setdefault(tid, time.monotonic())

    def accept(self, response: wire.ResponseFields | Malformed | None) -> str | None:
        """Record one response and call its hooks; returns why to stop, if a plugin said so.

        Runs once per result: kept to the few steps every result needs.
        """
        now = time.monotonic()
        if not isinstance(response, tuple):
            self._window.answered(None)
            return self._malformed(response)
        tid, rc, out, err, hsh, replaced, ext = response
        detail = None
        if ext is not None:
            kind = ext.WhichOneof("kind")
            if kind == "output":
                self._output(tid, ext.output)
                return None
            if kind == "heartbeat":
                self._heartbeat(ext.heartbeat)
                return None
            detail = ext.result if kind == "result" else None
        self._window.answered(tid)
        sent = self._sent_at.get(tid)  # only tids of this batch are ever sent
        results = self._outcome.results
        if sent is None or tid in results:
            if sent is not None and detail is not None and detail.replayed:
                return None  # sent again after a re-attach; the first copy stands
            reason = "unknown" if sent is None else "duplicate"
            return self._unexpected(UnexpectedResponse(tid, reason, rc, out, err))
        result = CommandResult(
            tid=tid,
            rc=rc,
            out=out,
            err=err,
            hsh=hsh,
            cmd=self._by_tid[tid].cmd,
            latency_s=max(0.0, now - sent),
            decode_replaced=replaced,
            usage=UNREPORTED if self._usage_asked else None,
        )
        if detail is not None:
            result = self._detailed(result, detail)
        results[tid] = result
        if replaced:
            log.warning(
                "stream %s: tid %d output was not valid UTF-8; invalid bytes replaced by U+FFFD",
                self.info.stream_id,
                tid,
            )
        if not self._result_hooked:
            return None
        stop = self._hooks.result(result, self.info)
        if stop is None:
            return None
        who, exc = stop
        return f"stopped by {who} at tid {tid}: {exc}"

    def _detailed(self, result: CommandResult, detail: Any) -> CommandResult:
        """``result`` with what the server added under ``ext.result``."""
        changes: dict[str, Any] = {}
        if detail.replayed:
            changes["replayed"] = True
        if detail.interrupted:
            changes["interrupted"] = True
        if detail.started_unix_ms:
            changes["started_at"] = detail.started_unix_ms / 1000
        if detail.ended_unix_ms:
            changes["ended_at"] = detail.ended_unix_ms / 1000
        if detail.HasField("usage"):
            usage = detail.usage
            changes["usage"] = Usage(
                usage.wall_ms, usage.user_cpu_ms, usage.sys_cpu_ms, usage.max_rss_kb or None
            )
        if detail.streamed:
            tid = result.tid
            out = self._assembler.finish(
                tid, STDOUT, truncated=detail.out_truncated, kept_bytes=detail.out_bytes
            )
            err = self._assembler.finish(
                tid, STDERR, truncated=detail.err_truncated, kept_bytes=detail.err_bytes
            )
            changes.update(
                out=out.text,
                out_file=out.path,
                out_sha256=out.sha256,
                err=err.text,
                err_file=err.path,
                err_sha256=err.sha256,
            )
        return dataclasses.replace(result, **changes) if changes else result

    def _output(self, tid: int, chunk: Any) -> None:
        if tid not in self._sent_at or tid in self._outcome.results:
            return  # output of a command we did not send or that already ended
        new = self._assembler.add(tid, chunk.fd, chunk.data, chunk.offset)
        if new is not None:
            self._hooks.output(new, self.info)

    def _heartbeat(self, heartbeat: Any) -> None:
        self.heartbeats += 1
        running = {item.tid: item.elapsed_ms / 1000 for item in heartbeat.running}
        log.debug("stream %s: heartbeat, running %s", self.info.stream_id, running)
        self._hooks.heartbeat(running, self.info)

    def _malformed(self, response: Malformed | None) -> str | None:
        error = response.error if response is not None else "no message"
        size = response.size if response is not None else 0
        return self._unexpected(
            UnexpectedResponse(
                tid=0,
                reason="malformed",
                rc=0,
                out="",
                err=f"{size} byte(s) that do not parse as RemResMsg: {error}",
            )
        )

    def _unexpected(self, response: UnexpectedResponse) -> str | None:
        """Keep (the start of) a response nobody asked for; returns why to end the
        stream once there were too many."""
        outcome = self._outcome
        outcome.unexpected_count += 1
        count = outcome.unexpected_count
        if count <= KEPT_UNEXPECTED:
            kept = dataclasses.replace(
                response, out=response.out[:KEPT_TEXT_CHARS], err=response.err[:KEPT_TEXT_CHARS]
            )
            outcome.unexpected.append(kept)
            log.warning(
                "stream %s: unexpected response (%s) for tid %d",
                self.info.stream_id,
                response.reason,
                response.tid,
            )
            self._hooks.unexpected_response(kept, self.info)
        if count >= MAX_UNEXPECTED:
            return (
                f"the client ended the stream: the server sent {count} responses nobody asked "
                "for (a faulty or hostile server); every real result is kept"
            )
        return None
