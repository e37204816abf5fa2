"""Kept batches from the client's side: cancel one, or ask how it stands (``batch/1``).

A batch run with ``run_commands(..., batch_key=K)`` on a server that keeps batches
goes on when its stream is lost; :func:`cancel_batch` is how a user's kill reaches it
(its running command is killed, nothing more starts), and :func:`get_batch` says what
the server knows of it. Both are the ``RS.RemSvcExt`` calls of
docs/protocol-extensions.md; the upstream server does not have them
(:class:`~remsvc_core.errors.CallError` with code ``UNIMPLEMENTED``).
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from dataclasses import dataclass

import grpc.aio

from remsvc_core import channels
from remsvc_core.errors import CallError
from remsvc_core.extensions import check_batch_key
from remsvc_core.settings import ChannelSettings, check_timeout
from remsvc_core.synchronous import synchronous
from remsvc_core.wire import pb

__all__ = ["BatchState", "cancel_batch", "cancel_batch_sync", "get_batch", "get_batch_sync"]

_SERVICE = "/RS.RemSvcExt"


@dataclass(frozen=True)
class BatchState:
    """What a server knows of a kept batch.

    ``state``: ``running`` (a stream is attached), ``detached`` (lost its stream, goes
    on for the grace period), ``finished``, ``cancelled``, ``abandoned`` (nobody
    re-attached in time) or ``unknown`` (no such batch for this identity).
    """

    key: str
    state: str
    finished_tids: tuple[int, ...] = ()
    running_tid: int | None = None


async def _call(
    method: str,
    settings: ChannelSettings,
    key: str,
    timeout: float,
    metadata: Iterable[tuple[str, str]],
) -> BatchState:
    check_batch_key(key)
    check_timeout(timeout, "timeout")
    channel = await channels.get_channel(settings)
    call = channel.unary_unary(
        f"{_SERVICE}/{method}",
        request_serializer=pb.BatchRef.SerializeToString,
        response_deserializer=pb.BatchState.FromString,
    )
    try:
        reply = await asyncio.wait_for(
            call(
                pb.BatchRef(key=key),
                timeout=timeout,
                metadata=tuple(settings.call_metadata(metadata)),
            ),
            timeout + 1.0,
        )
    except grpc.aio.AioRpcError as exc:
        code = exc.code()
        name = code.name if code is not None else "UNKNOWN"
        hint = (
            " (the server does not keep batches: it is not the reference server, or its "
            "extensions are off)"
            if name == "UNIMPLEMENTED"
            else ""
        )
        raise CallError(
            f"{method} of batch {key!r} on {settings.target} failed with {name}: "
            f"{exc.details() or 'no details'}{hint}",
            code=name,
            details=exc.details() or "",
            target=settings.target,
        ) from None
    except asyncio.TimeoutError:
        raise CallError(
            f"{method} of batch {key!r} on {settings.target} got no answer within {timeout}s",
            code="DEADLINE_EXCEEDED",
            target=settings.target,
        ) from None
    return BatchState(
        key=reply.key,
        state=reply.state,
        finished_tids=tuple(reply.finished_tids),
        running_tid=reply.running_tid or None,
    )


async def cancel_batch(
    settings: ChannelSettings,
    key: str,
    *,
    timeout: float = 10.0,
    metadata: Iterable[tuple[str, str]] = (),
) -> BatchState:
    """Kill the batch's running command and start nothing more of it; returns its state."""
    return await _call("CancelBatch", settings, key, timeout, metadata)


async def get_batch(
    settings: ChannelSettings,
    key: str,
    *,
    timeout: float = 10.0,
    metadata: Iterable[tuple[str, str]] = (),
) -> BatchState:
    """What the server knows of the batch (``state == "unknown"`` if nothing)."""
    return await _call("GetBatch", settings, key, timeout, metadata)


cancel_batch_sync = synchronous(cancel_batch)
get_batch_sync = synchronous(get_batch)
