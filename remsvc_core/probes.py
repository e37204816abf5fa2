"""Is the server there, and how is it? ``Ping`` and ``GetStatus`` as small typed calls."""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import grpc.aio

from remsvc_core import channels, wire
from remsvc_core.diagnosis import explain_unavailable
from remsvc_core.errors import CallError, SettingsError
from remsvc_core.settings import ChannelSettings, check_timeout
from remsvc_core.synchronous import synchronous

__all__ = ["PingReply", "StatusReply", "get_status", "get_status_sync", "ping", "ping_sync"]

_HINTS = {
    "UNAUTHENTICATED": "check the connection's bearer token",
    "PERMISSION_DENIED": "the server refused this caller",
    "DEADLINE_EXCEEDED": "the server did not answer in time",
}
_sequence = itertools.count(1)


@dataclass(frozen=True)
class PingReply:
    """A ping's echo: ``latency_s`` is the round trip measured by the client."""

    target: str
    seq: int
    latency_s: float


@dataclass(frozen=True)
class StatusReply:
    """What ``GetStatus`` answered; ``fields`` parses ``key=value`` words of ``msg``."""

    target: str
    rc: int
    msg: str

    @property
    def fields(self) -> dict[str, str]:
        pairs = (word.split("=", 1) for word in self.msg.split() if "=" in word)
        return {key: value for key, value in pairs}

    @property
    def ok(self) -> bool:
        return self.rc == 0


def _check(settings: ChannelSettings, timeout: float) -> None:
    if not isinstance(settings, ChannelSettings):
        raise SettingsError(f"settings must be a ChannelSettings, got {type(settings).__name__}")
    check_timeout(timeout, "timeout")


async def _unary(
    what: str,
    method: str,
    request: Any,
    response_type: Any,
    settings: ChannelSettings,
    timeout: float,
    metadata: Iterable[tuple[str, str]],
) -> Any:
    _check(settings, timeout)
    call_metadata = tuple(settings.call_metadata(metadata))
    channel = await channels.get_channel(settings)
    multicallable = channel.unary_unary(
        method,
        request_serializer=type(request).SerializeToString,
        response_deserializer=response_type.FromString,
    )
    try:
        # The local timeout backs up the gRPC deadline, as in the engine.
        return await asyncio.wait_for(
            multicallable(request, timeout=timeout, metadata=call_metadata), timeout + 1.0
        )
    except grpc.aio.AioRpcError as exc:
        code = exc.code()
        name = code.name if code is not None else "UNKNOWN"
        hint = _HINTS.get(name, "")
        if name == "UNAVAILABLE":
            # Nothing listening and a TLS mismatch both read UNAVAILABLE: look closer.
            hint = await asyncio.to_thread(explain_unavailable, settings)
        details = exc.details() or ""
        raise CallError(
            f"{what} to {settings.target} failed with {name}: {details or 'no details'}"
            + (f" ({hint})" if hint else ""),
            code=name,
            details=details,
            target=settings.target,
            hint=hint,
        ) from None
    except asyncio.TimeoutError:
        raise CallError(
            f"{what} to {settings.target} got no answer within {timeout}s",
            code="DEADLINE_EXCEEDED",
            target=settings.target,
        ) from None


async def ping(
    settings: ChannelSettings, *, timeout: float = 10.0, metadata: Iterable[tuple[str, str]] = ()
) -> PingReply:
    """Ping the server; a failed call raises :class:`~remsvc_core.errors.CallError`."""
    seq = next(_sequence) % 2**31
    payload = seq.to_bytes(4, "big")
    sent = time.monotonic()
    pong = await _unary(
        "Ping",
        wire.METHOD_PING,
        wire.pb.PingMsg(seq=seq, time=time.time_ns() // 1_000_000, data=payload),
        wire.pb.PongMsg,
        settings,
        timeout,
        metadata,
    )
    latency = time.monotonic() - sent
    if pong.seq != seq or pong.data != payload:
        raise CallError(
            f"Ping to {settings.target} came back altered (sent seq {seq}, got {pong.seq}); "
            "the server is not speaking the RemSvc protocol",
            code="DATA_LOSS",
            target=settings.target,
        )
    return PingReply(target=settings.target, seq=seq, latency_s=latency)


async def get_status(
    settings: ChannelSettings, *, timeout: float = 10.0, metadata: Iterable[tuple[str, str]] = ()
) -> StatusReply:
    """The server's status line; a failed call raises :class:`~remsvc_core.errors.CallError`."""
    status = await _unary(
        "GetStatus",
        wire.METHOD_STATUS,
        wire.pb.Empty(),
        wire.pb.StatusMsg,
        settings,
        timeout,
        metadata,
    )
    return StatusReply(target=settings.target, rc=status.rc, msg=status.msg)


ping_sync = synchronous(ping)
get_status_sync = synchronous(get_status)
