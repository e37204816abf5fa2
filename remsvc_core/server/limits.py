"""The server's ``[limits]``: commands at once (server-wide and per identity), streams
per identity.

The two kinds of limit act differently, on purpose:

* **Streams** are counted when a call opens. A stream past its identity's
  ``max_streams`` is refused at once with ``RESOURCE_EXHAUSTED`` naming the limit,
  before it reads a request: nothing ran, and the caller may try again. This is what
  bounds the memory an identity can make the server hold.
* **Commands** take a slot when they are about to start and give it back when they
  end. A command that finds no slot free *waits its turn* (first come, first served
  across every stream) instead of failing: a server at its limit is slower, never a
  source of failed tasks, and never refuses half way through a batch. A waiting
  command costs no more than the request it is (a stream reads one request ahead).

Upstream has neither: every command starts at once.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import grpc

from remsvc_core.server.execution import Refusal

__all__ = ["CommandSlots", "Limits", "Ticket"]


@dataclass
class Ticket:
    """One open stream of ``identity``: give it back with :meth:`Limits.release`."""

    identity: str
    released: bool = field(default=False, repr=False)


@dataclass(eq=False)
class _Waiter:
    identity: str
    granted: Callable[[], None]


class Limits:
    """Counts what each identity holds; ``config`` is the server's ``ServerConfig``."""

    def __init__(self, config: Any) -> None:
        self._config = config
        self._commands = 0
        self._identity_commands: collections.Counter[str] = collections.Counter()
        self._identity_streams: collections.Counter[str] = collections.Counter()
        self._waiters: collections.deque[_Waiter] = collections.deque()
        self._identity_max: dict[str, int] = {}

    # -- streams -----------------------------------------------------------------------

    def take(self, identity: str) -> Ticket:
        """Count one more open stream for ``identity``, or raise
        :class:`~remsvc_core.server.execution.Refusal` naming the limit in the way."""
        limit = self._config.limits_for(identity).max_streams
        if self._identity_streams[identity] >= limit:
            raise Refusal(
                grpc.StatusCode.RESOURCE_EXHAUSTED,
                f"identity {identity!r} has {limit} streams open "
                f"(max_streams = {limit}); close one or raise the limit",
            )
        self._identity_streams[identity] += 1
        return Ticket(identity)

    def release(self, ticket: Ticket | None) -> None:
        if ticket is None or ticket.released:
            return
        ticket.released = True
        self._identity_streams[ticket.identity] -= 1

    # -- command slots -----------------------------------------------------------------

    def slots(self, identity: str) -> CommandSlots:
        """The command slots of ``identity``, for one execution (or one unary call)."""
        return CommandSlots(self, identity)

    @property
    def commands_running(self) -> int:
        return self._commands

    @property
    def commands_waiting(self) -> int:
        return len(self._waiters)

    def _free_for(self, identity: str) -> bool:
        if self._commands >= self._config.max_commands:
            return False
        limit = self._identity_max.get(identity)
        if limit is None:  # looked up once: this runs for every command
            limit = self._identity_max[identity] = self._config.limits_for(identity).max_commands
        return self._identity_commands[identity] < limit

    def _take_slot(self, identity: str) -> None:
        self._commands += 1
        self._identity_commands[identity] += 1

    def _try_acquire(self, identity: str) -> bool:
        # Whoever waits was handed every slot that freed up while it could use one
        # (see _hand_out), so a free slot here is nobody's: no queue jumping.
        if not self._free_for(identity):
            return False
        self._take_slot(identity)
        return True

    def _release_slot(self, identity: str) -> None:
        self._commands -= 1
        self._identity_commands[identity] -= 1
        if self._waiters:
            self._hand_out()

    def _hand_out(self) -> None:
        """Give freed slots to the longest waiting first. A waiter whose own identity
        is full keeps its place and lets the next one through."""
        for waiter in list(self._waiters):
            if self._commands >= self._config.max_commands:
                return
            if self._free_for(waiter.identity):
                self._waiters.remove(waiter)
                self._take_slot(waiter.identity)
                waiter.granted()

    def _wait(self, waiter: _Waiter) -> None:
        self._waiters.append(waiter)

    def _stop_waiting(self, waiter: _Waiter) -> None:
        with contextlib.suppress(ValueError):  # handed a slot already
            self._waiters.remove(waiter)


class CommandSlots:
    """One identity's command slots as one execution (or unary call) uses them.

    :meth:`try_acquire` takes a slot now if one is free; otherwise :meth:`wait_turn`
    queues this holder, and ``on_granted`` is called (soon, from the event loop) once
    a slot was taken on its behalf. Every slot taken is given back with
    :meth:`release`.
    """

    def __init__(self, limits: Limits, identity: str) -> None:
        self._limits = limits
        self.identity = identity
        self._waiter: _Waiter | None = None

    @property
    def waiting(self) -> bool:
        return self._waiter is not None

    def try_acquire(self) -> bool:
        return self._limits._try_acquire(self.identity)

    def release(self) -> None:
        self._limits._release_slot(self.identity)

    def wait_turn(self, on_granted: Callable[[], None]) -> None:
        """Queue for the next free slot (once: a holder already waiting keeps its place)."""
        if self._waiter is not None:
            return
        loop = asyncio.get_running_loop()

        def granted() -> None:
            self._waiter = None
            # Called while the slot's last holder is being released: run the new
            # holder from the loop, not inside someone else's callback.
            loop.call_soon(on_granted)

        self._waiter = _Waiter(self.identity, granted)
        self._limits._wait(self._waiter)

    def stop_waiting(self) -> None:
        if self._waiter is not None:
            self._limits._stop_waiting(self._waiter)
            self._waiter = None

    async def acquire(self) -> None:
        """Wait for a slot (first come, first served); a cancelled wait takes none."""
        if self.try_acquire():
            return
        got: asyncio.Future[None] = asyncio.get_running_loop().create_future()

        def granted() -> None:
            if got.cancelled():
                self.release()  # taken for us as we gave up: hand it on
            else:
                got.set_result(None)

        self.wait_turn(granted)
        try:
            await got
        except asyncio.CancelledError:
            self.stop_waiting()
            raise
