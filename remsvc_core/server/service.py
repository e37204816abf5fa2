"""The ``RS.RemSvc`` servicer: Ping, GetStatus, RemCmd and RemCmdStrm.

Before a command runs it passes two gates, in upstream's order: the CRC-32 check of a
non-empty ``hsh`` (INVALID_ARGUMENT "hash mismatch") and the allow/deny lists
(PERMISSION_DENIED). Either failure ends the call; on a stream, results of commands
that already ran have been sent and commands still running are allowed to finish
and are sent too, then the stream ends with that status.

A stream runs one command at a time in arrival order, like upstream; with
``max_parallel`` > 1 up to that many run at once and responses go out as commands
finish (clients correlate by ``tid``). When the call ends early — the client cancels,
its deadline passes, the server shuts down — every running command's process group
is killed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator
from typing import Any

import grpc
from grpc import aio

from remsvc_core.hashing import command_hash
from remsvc_core.server.auth import current_identity
from remsvc_core.server.policy import CommandPolicy
from remsvc_core.server.runner import CommandRunner
from remsvc_core.wire import pb, pb_grpc

__all__ = ["RemSvcService"]

log = logging.getLogger("remsvc.server")

_END = object()
_STOP_WAIT_S = 5.0


class _Refused(Exception):
    def __init__(self, code: grpc.StatusCode, details: str) -> None:
        super().__init__(details)
        self.code = code
        self.details = details


class RemSvcService(pb_grpc.RemSvcServicer):  # type: ignore[misc]
    def __init__(
        self, runner: CommandRunner, policy: CommandPolicy, *, max_parallel: int = 1
    ) -> None:
        self.runner = runner
        self.policy = policy
        self.max_parallel = max_parallel
        self.started = time.monotonic()
        self.commands_run = 0
        self.draining = False

    async def Ping(self, request: Any, context: aio.ServicerContext[Any, Any]) -> Any:
        return pb.PongMsg(seq=request.seq, time=request.time, data=request.data)

    async def GetStatus(self, request: Any, context: aio.ServicerContext[Any, Any]) -> Any:
        uptime = int(time.monotonic() - self.started)
        return pb.StatusMsg(rc=0, msg=f"state=OK uptime={uptime}s commands={self.commands_run}")

    async def RemCmd(self, request: Any, context: aio.ServicerContext[Any, Any]) -> Any:
        try:
            self._admit(request, context)
        except _Refused as refused:
            await context.abort(refused.code, refused.details)
        return await self._execute(request, context)

    async def RemCmdStrm(
        self, request_iterator: AsyncIterator[Any], context: aio.ServicerContext[Any, Any]
    ) -> AsyncIterator[Any]:
        responses: asyncio.Queue[Any] = asyncio.Queue()
        slots = asyncio.Semaphore(self.max_parallel)
        running: set[asyncio.Task[None]] = set()
        refusal: list[_Refused] = []

        async def run_one(request: Any) -> None:
            try:
                responses.put_nowait(await self._execute(request, context))
            except Exception:
                # A server bug must not pass for a clean end with a missing result.
                log.exception("internal error running tid=%d", request.tid)
                refusal.append(
                    _Refused(grpc.StatusCode.INTERNAL, f"internal error running tid {request.tid}")
                )
            finally:
                slots.release()

        async def accept() -> None:
            try:
                async for request in request_iterator:
                    # Waiting for a free slot first keeps upstream's order of events:
                    # the next command is not even looked at until one may start.
                    await slots.acquire()
                    if refusal:  # a command failed inside the server meanwhile
                        slots.release()
                        break
                    try:
                        self._admit(request, context)
                    except _Refused as refused:
                        slots.release()
                        refusal.append(refused)
                        break
                    task = asyncio.create_task(run_one(request))
                    running.add(task)
                    task.add_done_callback(running.discard)
                while running:
                    await asyncio.wait(set(running))
            finally:
                responses.put_nowait(_END)

        acceptor = asyncio.create_task(accept())
        try:
            while True:
                item = await responses.get()
                if item is _END:
                    break
                yield item
            await acceptor  # re-raises a failure reading the requests
            if refusal:
                await context.abort(refusal[0].code, refusal[0].details)
        finally:
            # Reached on cancellation too: stop reading and kill what still runs.
            pending = [task for task in (acceptor, *running) if not task.done()]
            for task in pending:
                task.cancel()
            if pending:
                with contextlib.suppress(asyncio.CancelledError):
                    await asyncio.wait(pending, timeout=_STOP_WAIT_S)

    def _admit(self, request: Any, context: aio.ServicerContext[Any, Any]) -> None:
        """Raise :class:`_Refused` if the command must not run."""
        identity = current_identity.get()
        if self.draining:
            raise _Refused(grpc.StatusCode.UNAVAILABLE, "server is shutting down")
        if request.hsh and request.hsh != command_hash(request.cmd):
            log.warning(
                "refused tid=%d identity=%s src=%r peer=%s: hash mismatch",
                request.tid,
                identity,
                request.src,
                context.peer(),
            )
            raise _Refused(grpc.StatusCode.INVALID_ARGUMENT, "hash mismatch")
        decision = self.policy.check(request.cmd)
        if not decision.allowed:
            log.warning(
                "refused tid=%d identity=%s src=%r peer=%s: %s",
                request.tid,
                identity,
                request.src,
                context.peer(),
                decision.reason,
            )
            raise _Refused(grpc.StatusCode.PERMISSION_DENIED, decision.reason)

    async def _execute(self, request: Any, context: aio.ServicerContext[Any, Any]) -> Any:
        began = time.monotonic()
        result = await self.runner.run(request.cmd, request.cmdtyp, request.cmdusr)
        self.commands_run += 1
        log.info(
            "command identity=%s src=%r tid=%d rc=%d duration_ms=%d%s%s",
            current_identity.get(),
            request.src,
            request.tid,
            result.rc,
            round((time.monotonic() - began) * 1000),
            f" user={request.cmdusr}" if request.cmdusr else "",
            " timed_out" if result.timed_out else "",
        )
        log.debug("command tid=%d cmd=%r pid=%s", request.tid, request.cmd[:200], result.pid)
        return pb.RemResMsg(
            rc=result.rc, tid=request.tid, out=result.out, err=result.err, hsh=request.hsh
        )
