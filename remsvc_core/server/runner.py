"""Run commands in child processes: the face the service sees.

:class:`CommandRunner` puts the parts together: :mod:`~remsvc_core.server.spawn`
starts a child (as another user through :mod:`~remsvc_core.server.identity`),
:mod:`~remsvc_core.server.command` watches it to its result, capturing output with
:mod:`~remsvc_core.server.capture`, and :mod:`~remsvc_core.server.children` keeps
every child until it is reaped, killing through :mod:`~remsvc_core.server.killing`.
How a command ends and what is left behind is told in
:mod:`~remsvc_core.server.command`.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import Callable, Collection

from remsvc_core.server.children import Children
from remsvc_core.server.command import DEFAULT_LINGER_S, CommandLimits, RunningCommand
from remsvc_core.server.outcome import CannotStart, ExecResult, Outcome
from remsvc_core.server.spawn import CommandEnvironment, Spawner

__all__ = ["CommandRunner"]


class CommandRunner:
    """Runs commands with one output cap and timeout; remembers its live children."""

    def __init__(
        self,
        *,
        output_cap: int,
        timeout_s: float,
        linger_s: float = DEFAULT_LINGER_S,
        hidden_env: Collection[str] = (),
        descriptors_private: bool = False,
    ) -> None:
        """``hidden_env``: variables the commands must not inherit (those that held tokens).
        The commands' environment is the server's as it is now, taken once (see
        :class:`~remsvc_core.server.spawn.CommandEnvironment`).

        ``descriptors_private``: the caller made every descriptor of this process
        above stderr close-on-exec, and nothing in it makes inheritable ones (the CLI
        server sees to that at startup, see ``app.serve``). Commands are then started
        with :func:`os.posix_spawn` (see :mod:`~remsvc_core.server.spawn`).
        """
        self.limits = CommandLimits(output_cap, timeout_s, linger_s)
        self._spawner = Spawner(CommandEnvironment(hidden_env), posix_spawn=descriptors_private)
        self._children = Children()

    @property
    def live_pids(self) -> list[int]:
        """Pids of the children not reaped yet (each is also its process group id)."""
        return self._children.pids

    def kill_all(self) -> None:
        """SIGKILL every running command's processes (server shutdown)."""
        self._children.kill_all()

    async def wait_idle(self, timeout: float) -> bool:
        """Wait (bounded) until every child was reaped; True if none is left."""
        return await self._children.wait_idle(timeout)

    async def run(self, cmd: str, cmdtyp: int = 0, cmdusr: str = "") -> ExecResult:
        """Run one command to its end. Cancelling the caller kills the command."""
        finished: asyncio.Future[Outcome] = asyncio.get_running_loop().create_future()

        def deliver(outcome: Outcome) -> None:
            if not finished.done():
                finished.set_result(outcome)

        command = self.start(cmd, cmdtyp, cmdusr, on_done=deliver)
        try:
            outcome = await finished
        finally:
            if command is not None:
                command.cancel()  # kills it if we were cancelled; a no-op once it finished
        if isinstance(outcome, Exception):
            raise outcome
        return outcome

    def start(
        self,
        cmd: str,
        cmdtyp: int = 0,
        cmdusr: str = "",
        *,
        on_done: Callable[[Outcome], None],
        on_output: Callable[[int, bytes], None] | None = None,
        want_usage: bool = False,
    ) -> RunningCommand | None:
        """Spawn ``cmd`` now; ``on_done(outcome)`` is called once, from the event loop.

        Returns the running command (whose ``cancel()`` kills it; ``on_done`` is then
        not called), or None when it could not start: ``on_done`` then gets the error
        result soon, never from inside this call. ``on_output`` and ``want_usage``: see
        :class:`~remsvc_core.server.command.RunningCommand`.
        """
        loop = asyncio.get_running_loop()
        try:
            spawned = self._spawner.spawn(cmd, cmdtyp, cmdusr)
        except CannotStart as refused:
            # Soon, not now: a caller that starts the next command from on_done must
            # not recurse.
            loop.call_soon(on_done, refused.result())
            return None
        child = spawned.child
        self._children.add(child, spawned.tag)
        try:
            return RunningCommand(
                spawned, self.limits, self._children, loop, on_done, on_output, want_usage
            )
        except BaseException:  # could not watch it: do not leave it running unwatched
            for fd in (spawned.out_fd, spawned.err_fd):
                with contextlib.suppress(Exception):
                    loop.remove_reader(fd)
                os.close(fd)
            self._children.kill(child.pid)
            self._children.reap(child)
            raise
