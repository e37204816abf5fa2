"""Everything that works around grpc/grpc#36066, in one place.

The bug: when the client has a write pending at the moment the server ends a
bidirectional stream, grpc.aio fails the call locally with INTERNAL "Internal error
from Core". Two things are lost with it:

1. **The server's status.** A denied command reads as INTERNAL instead of
   PERMISSION_DENIED. :class:`StatusWatch` recovers it: either its done-callback saw
   the server's status before grpc.aio overwrote it, or the real status replaces the
   synthetic one a moment later and :meth:`StatusWatch.real_status` polls for it.
2. **Responses already received.** Once the call is marked failed, ``call.read()``
   refuses to return responses that gRPC Core had received before the server's
   status. The call's private reader (``call._read``) still returns them, then EOF;
   :func:`drain_buffered` reads them. Without it, about half of the streams that
   ended this way lost results (tests/reliability).

How it does it, and what it relies on (checked by
``tests/engine/test_grpc_workaround.py`` against the installed grpcio, which fails
loudly if a private name changes or the upstream bug is fixed):

- ``call._read()``: a private coroutine method of grpc.aio's stream calls;
- reading ``code()``/``details()`` of a finished call from a done-callback by
  stepping their coroutines by hand (:func:`value_now`): a done-callback is a plain
  function and cannot await, and for a finished call those coroutines complete
  without suspending.

The engine also keeps the write window small (:mod:`remsvc_core.send_window`) so a
write is rarely pending at all. When the upstream bug is fixed, this module, the
window's first reason, and their tests can go.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

import grpc
import grpc.aio

__all__ = [
    "EOF",
    "SYNTHETIC_INTERNAL",
    "StatusWatch",
    "drain_buffered",
    "status_of",
    "value_now",
]

log = logging.getLogger("remsvc_core.engine")

#: grpc.aio's end-of-stream marker for ``call.read()`` (missing from grpc-stubs).
EOF: Any = grpc.aio.EOF  # type: ignore[attr-defined]
#: The status grpc.aio puts in place of the server's when it fails a call locally.
SYNTHETIC_INTERNAL = ("INTERNAL", "Internal error from Core")

_REAL_STATUS_POLLS = 50
_REAL_STATUS_POLL_S = 0.02
# Responses Core already holds arrive at once; this only bounds a transport gone quiet.
_DRAIN_WAIT_S = 2.0


def status_of(exc: grpc.aio.AioRpcError) -> tuple[str, str]:
    """(code name, details) of a failed call."""
    # code() and details() only: debug_error_string() was seen to block forever.
    code = exc.code()
    return (code.name if code is not None else "UNKNOWN"), (exc.details() or "")


def value_now(awaitable: Any) -> Any:
    """The result of an awaitable that completes without suspending, else None."""
    try:
        awaitable.send(None)
    except StopIteration as finished:
        return finished.value
    except Exception:
        return None
    awaitable.close()
    return None


class StatusWatch:
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
            code = value_now(call.code())
            details = value_now(call.details())
            if code is None:
                return
            status = (code.name, details or "")
            if status != SYNTHETIC_INTERNAL:
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
            if current != SYNTHETIC_INTERNAL:
                return (current[0], current[1] or "")
            await asyncio.sleep(_REAL_STATUS_POLL_S)
        return reported


async def drain_buffered(call: Any, accept: Callable[[Any], str | None]) -> str | None:
    """Hand ``accept`` the responses Core still holds after grpc.aio failed the call.

    Returns the first non-None value ``accept`` returned (a reason to stop), else None.
    """
    read = getattr(call, "_read", None)  # grpc.aio internals; absent -> nothing to do
    if read is None:
        return None
    while True:
        try:
            response = await asyncio.wait_for(read(), _DRAIN_WAIT_S)
        except (grpc.aio.AioRpcError, asyncio.TimeoutError):
            return None
        if response is EOF:
            return None
        stop = accept(response)
        if stop is not None:
            return stop
