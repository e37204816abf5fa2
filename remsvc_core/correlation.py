"""Matching responses to commands by ``tid``, and keeping what makes no sense aside.

Each response read off a stream goes through :meth:`Correlator.accept`: the first
answer for a tid that was sent becomes a :class:`~remsvc_core.results.CommandResult`
in the outcome and is handed to the ``remsvc_result`` hooks; a repeated tid, a tid
never sent, or bytes that are no response at all become an
:class:`~remsvc_core.results.UnexpectedResponse` and never overwrite a real result.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

from remsvc_core import wire
from remsvc_core.commands import Command
from remsvc_core.hookspecs import StreamInfo
from remsvc_core.plugins import StreamHooks
from remsvc_core.results import CommandResult, StreamOutcome, UnexpectedResponse
from remsvc_core.send_window import SendWindow

__all__ = ["Correlator", "Malformed", "decode_or_malformed"]

log = logging.getLogger("remsvc_core.engine")


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
        window: SendWindow,
        info: StreamInfo,
    ) -> None:
        self._by_tid = {command.tid: command for command in batch}
        self._outcome = outcome
        self._hooks = hooks
        self._window = window
        # Most streams have no remsvc_result hook: then a result costs no hook call.
        self._result_hooked = hooks.implemented("remsvc_result")
        self._sent_at: dict[int, float] = {}  # tid -> time.monotonic() when written
        #: Which stream and attempt the hooks are told about; the engine updates it.
        self.info = info

    def sent(self, tid: int) -> None:
        """The command ``tid`` was handed to the transport now (its latency starts)."""
        self._sent_at[tid] = time.monotonic()

    def accept(self, response: wire.ResponseFields | Malformed | None) -> str | None:
        """Record one response and call its hooks; returns why to stop, if a plugin said so.

        Runs once per result: kept to the few steps every result needs.
        """
        now = time.monotonic()
        if not isinstance(response, tuple):
            self._window.answered(None)
            self._malformed(response)
            return None
        tid, rc, out, err, hsh, replaced, _ext = response
        self._window.answered(tid)
        sent = self._sent_at.get(tid)  # only tids of this batch are ever sent
        results = self._outcome.results
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
            cmd=self._by_tid[tid].cmd,
            latency_s=max(0.0, now - sent),
            decode_replaced=replaced,
        )
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

    def _malformed(self, response: Malformed | None) -> None:
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
        self._outcome.unexpected.append(response)
        log.warning(
            "stream %s: unexpected response (%s) for tid %d",
            self.info.stream_id,
            response.reason,
            response.tid,
        )
        self._hooks.unexpected_response(response, self.info)
