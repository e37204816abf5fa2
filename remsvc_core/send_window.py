"""The engine's send window: how much of a batch may be on the wire unanswered.

Why a window at all: a write still pending when the server ends the stream makes
grpc.aio replace the server's status with INTERNAL and stop returning responses it
had already received (grpc/grpc#36066, see :mod:`remsvc_core.grpc_workaround`).
Keeping far less unanswered than HTTP/2's 64 KiB flow-control window means a write
never waits on flow control, so it is rarely pending at that moment.

Why it refills in bursts: waking the writer for every answer made it write one
command per event-loop pass, which cost more client CPU than the rest of the engine
together. A full window is refilled only once answers brought it down to the
low-water mark (half), in one burst.

Why it can give up: RemSvc servers answer each command as it ends, so answers move
the window. A server that wants the whole batch before it answers anything would
hang the stream until its timeout; if not one answer came within ``patience_s``, the
rest of the batch is sent without a window.
"""

from __future__ import annotations

import asyncio
import logging

__all__ = ["SendWindow"]

log = logging.getLogger("remsvc_core.engine")

MAX_COMMANDS = 256
MAX_BYTES = 32 * 1024
FIRST_ANSWER_PATIENCE_S = 10.0


class SendWindow:
    """Tracks what was written and not yet answered, and makes the writer wait.

    The writer asks :meth:`has_room` before each command (cheap, no await) and awaits
    :meth:`wait_for_room` only when the window is full; it reports each write with
    :meth:`sent`. The reader reports every response with :meth:`answered`.
    """

    __slots__ = (
        "_bytes",
        "_heard",
        "_in_flight",
        "_label",
        "_max_bytes",
        "_max_commands",
        "_moved",
        "_refill_bytes",
        "_refill_commands",
        "_unbounded",
        "_writer_waiting",
        "patience_s",
    )

    def __init__(
        self,
        *,
        max_commands: int = MAX_COMMANDS,
        max_bytes: int = MAX_BYTES,
        patience_s: float | None = None,
        label: str = "",
    ) -> None:
        self._max_commands = max_commands
        self._max_bytes = max_bytes
        self._refill_commands = max_commands // 2
        self._refill_bytes = max_bytes // 2
        self.patience_s = FIRST_ANSWER_PATIENCE_S if patience_s is None else patience_s
        self._label = label
        self._in_flight: dict[int, int] = {}  # tid -> encoded size, written and unanswered
        self._bytes = 0
        self._moved = asyncio.Event()
        self._writer_waiting = False
        self._heard = False  # any response at all has arrived
        self._unbounded = False

    @property
    def in_flight(self) -> int:
        """How many written commands are still unanswered."""
        return len(self._in_flight)

    @property
    def unbounded(self) -> bool:
        """True once the window was given up (no answer within the patience)."""
        return self._unbounded

    def has_room(self, size: int) -> bool:
        """Whether a command of ``size`` bytes may be written now."""
        in_flight = self._in_flight
        return (
            not in_flight
            or self._unbounded
            or (len(in_flight) < self._max_commands and self._bytes + size <= self._max_bytes)
        )

    def sent(self, tid: int, size: int) -> None:
        """A command of ``size`` bytes was handed to the transport."""
        self._in_flight[tid] = size
        self._bytes += size

    def answered(self, tid: int | None) -> None:
        """A response arrived (``tid`` None for one that names no command of ours)."""
        self._heard = True
        size = self._in_flight.pop(tid, None) if tid is not None else None
        if size is None:
            return
        self._bytes -= size
        if (
            self._writer_waiting
            and len(self._in_flight) <= self._refill_commands
            and self._bytes <= self._refill_bytes
        ):
            self._writer_waiting = False
            self._moved.set()

    async def wait_for_room(self, size: int) -> None:
        """Wait until a command of ``size`` bytes may be written."""
        while not self.has_room(size):
            self._moved.clear()
            self._writer_waiting = True
            if self._heard:
                await self._moved.wait()  # the server answers as it goes
                continue
            try:
                await asyncio.wait_for(self._moved.wait(), self.patience_s)
            except asyncio.TimeoutError:
                if self._heard:
                    continue  # answers come, only not yet down to the low-water mark
                self._writer_waiting = False
                self._unbounded = True
                log.info(
                    "stream %s: no answer after %.0fs with %d command(s) in flight; "
                    "sending the rest of the batch without waiting",
                    self._label,
                    self.patience_s,
                    len(self._in_flight),
                )
