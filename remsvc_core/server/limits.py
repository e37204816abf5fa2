"""The server's ``[limits]``: commands at once (server-wide and per identity), streams
per identity. A call past a limit is refused with ``RESOURCE_EXHAUSTED`` naming it.

Command slots are taken when a stream opens, as many as it may run at once
(``max_parallel``), and given back when it closes: so a limit is only ever met at the
start of a call, before anything ran (a client may try again), never half way
through a batch. A kept batch holds its slots while it runs without a stream.
"""

from __future__ import annotations

import collections
from dataclasses import dataclass, field
from typing import Any

import grpc

from remsvc_core.server.execution import Refusal

__all__ = ["Limits", "Ticket"]


@dataclass
class Ticket:
    """What one call (or kept batch) holds: give it back with :meth:`Limits.release`."""

    identity: str
    commands: int = 0
    stream: bool = False
    released: bool = field(default=False, repr=False)


class Limits:
    """Counts what each identity holds; ``config`` is the server's ``ServerConfig``."""

    def __init__(self, config: Any) -> None:
        self._config = config
        self._commands = 0
        self._identity_commands: collections.Counter[str] = collections.Counter()
        self._identity_streams: collections.Counter[str] = collections.Counter()

    def take(self, identity: str, *, commands: int, stream: bool) -> Ticket:
        """Take ``commands`` command slots (and a stream) for ``identity``, or raise
        :class:`~remsvc_core.server.execution.Refusal` naming the limit in the way."""
        limits = self._config.limits_for(identity)
        if stream and self._identity_streams[identity] >= limits.max_streams:
            raise _exhausted(
                f"identity {identity!r} has {limits.max_streams} streams open "
                f"(max_streams = {limits.max_streams}); close one or raise the limit"
            )
        if commands and self._commands + commands > self._config.max_commands:
            raise _exhausted(
                f"the server runs {self._commands} commands of at most "
                f"{self._config.max_commands} ([limits] max_commands); try again later"
            )
        held = self._identity_commands[identity]
        if commands and held + commands > limits.max_commands:
            raise _exhausted(
                f"identity {identity!r} runs {held} commands of at most "
                f"{limits.max_commands} (max_commands); try again later"
            )
        self._commands += commands
        self._identity_commands[identity] += commands
        if stream:
            self._identity_streams[identity] += 1
        return Ticket(identity, commands, stream)

    def release(self, ticket: Ticket | None) -> None:
        if ticket is None or ticket.released:
            return
        ticket.released = True
        self._commands -= ticket.commands
        self._identity_commands[ticket.identity] -= ticket.commands
        if ticket.stream:
            self._identity_streams[ticket.identity] -= 1


def _exhausted(details: str) -> Refusal:
    return Refusal(grpc.StatusCode.RESOURCE_EXHAUSTED, details)
