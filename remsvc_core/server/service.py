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
import collections
import contextlib
import functools
import itertools
import logging
import time
from collections.abc import AsyncIterator
from typing import Any

import grpc
from grpc import aio

from remsvc_core.hashing import command_hash
from remsvc_core.printable import printable
from remsvc_core.server.audit import AuditLog
from remsvc_core.server.auth import current_identity
from remsvc_core.server.command import RunningCommand
from remsvc_core.server.outcome import ExecResult, Outcome
from remsvc_core.server.policy import CommandPolicy, Decision
from remsvc_core.server.runner import CommandRunner
from remsvc_core.wire import pb, pb_grpc

__all__ = ["RemSvcService"]

log = logging.getLogger("remsvc.server")

_STOP_WAIT_S = 5.0


class _Refused(Exception):
    def __init__(self, code: grpc.StatusCode, details: str) -> None:
        super().__init__(details)
        self.code = code
        self.details = details


class RemSvcService(pb_grpc.RemSvcServicer):  # type: ignore[misc]
    def __init__(
        self,
        runner: CommandRunner,
        policy: CommandPolicy,
        *,
        max_parallel: int = 1,
        audit: AuditLog | None = None,
    ) -> None:
        self.runner = runner
        self.policy = policy
        self.max_parallel = max_parallel
        self.audit = audit or AuditLog(None)
        self.started = time.monotonic()
        self.commands_run = 0
        self.draining = False

    async def Ping(self, request: Any, context: aio.ServicerContext[Any, Any]) -> Any:
        return pb.PongMsg(seq=request.seq, time=request.time, data=request.data)

    async def GetStatus(self, request: Any, context: aio.ServicerContext[Any, Any]) -> Any:
        uptime = int(time.monotonic() - self.started)
        return pb.StatusMsg(rc=0, msg=f"state=OK uptime={uptime}s commands={self.commands_run}")

    async def RemCmd(self, request: Any, context: aio.ServicerContext[Any, Any]) -> Any:
        identity, peer = current_identity.get(), context.peer()
        try:
            decision = self.admit(request, context, identity)
        except _Refused as refused:
            await context.abort(refused.code, refused.details)
        began = time.monotonic()
        try:
            result = await self.runner.run(request.cmd, request.cmdtyp, request.cmdusr)
        except asyncio.CancelledError:
            self.audit.cancelled(request, identity, peer, decision.reason, time.monotonic() - began)
            raise
        return self.report(request, result, time.monotonic() - began, identity, peer, decision)

    async def RemCmdStrm(
        self, request_iterator: AsyncIterator[Any], context: aio.ServicerContext[Any, Any]
    ) -> AsyncIterator[Any]:
        stream = _Stream(self, context)
        async for response in stream.serve(request_iterator):
            yield response

    def admit(
        self, request: Any, context: aio.ServicerContext[Any, Any], identity: str
    ) -> Decision:
        """The decision that lets the command run; raise :class:`_Refused` if it must not."""
        try:
            return self._admit(request, context, identity)
        except _Refused as refused:
            self.audit.refused(
                request, identity, context.peer(), refused.code.name, refused.details
            )
            raise

    def _admit(
        self, request: Any, context: aio.ServicerContext[Any, Any], identity: str
    ) -> Decision:
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
        return decision

    def report(
        self,
        request: Any,
        result: ExecResult,
        duration_s: float,
        identity: str,
        peer: str,
        decision: Decision,
    ) -> Any:
        """Log and audit the finished command (one INFO line each) and build its response."""
        self.commands_run += 1
        log.info(
            "command identity=%s src=%r tid=%d rc=%d duration_ms=%d%s%s",
            identity,
            request.src,
            request.tid,
            result.rc,
            round(duration_s * 1000),
            f" user={printable(request.cmdusr)}" if request.cmdusr else "",
            " timed_out" if result.timed_out else "",
        )
        self.audit.command(request, identity, peer, decision.reason, result, duration_s)
        if log.isEnabledFor(logging.DEBUG):
            log.debug("command tid=%d cmd=%r pid=%s", request.tid, request.cmd[:200], result.pid)
        return pb.RemResMsg(
            rc=result.rc, tid=request.tid, out=result.out, err=result.err, hsh=request.hsh
        )


class _Stream:
    """One RemCmdStrm call.

    A reader task takes requests off the wire; a request is admitted and started only
    once a slot is free (upstream's order of events: the next command is not even
    looked at until one may start). When a command ends, the runner calls
    :meth:`_finished` from the event loop, which starts the request waiting for that
    slot *before* it logs and queues the result: the next child runs while the
    previous result is sent.
    """

    def __init__(self, service: RemSvcService, context: aio.ServicerContext[Any, Any]) -> None:
        self.service = service
        self.context = context
        self.identity = current_identity.get()
        self.peer = context.peer()
        self.loop = asyncio.get_running_loop()
        self.free = service.max_parallel
        self.running: dict[int, RunningCommand] = {}
        # key -> (request, the decision that admitted it, when it started)
        self.begun: dict[int, tuple[Any, Decision, float]] = {}
        self.serial = itertools.count()
        self.waiting: Any = None  # a request read off the wire, waiting for a slot
        self.slot_given: asyncio.Future[None] | None = None
        self.responses: collections.deque[Any] = collections.deque()
        self.wakeup: asyncio.Future[None] | None = None
        self.reading = True
        self.read_failed = False
        self.refusal: _Refused | None = None
        self.closed = False

    async def serve(self, request_iterator: AsyncIterator[Any]) -> AsyncIterator[Any]:
        reader = asyncio.create_task(self._read(request_iterator))
        try:
            while True:
                while self.responses:
                    yield self.responses.popleft()
                if not self.reading and (
                    self.read_failed or self.free == self.service.max_parallel
                ):
                    break
                self.wakeup = self.loop.create_future()
                await self.wakeup
            await reader  # re-raises a failure reading the requests
            if self.refusal is not None:
                await self.context.abort(self.refusal.code, self.refusal.details)
        finally:
            # Reached on cancellation too: stop reading and kill what still runs. A
            # result still due (a command that could not start answers a loop turn
            # later) must not start the waiting request on a call that has ended.
            self.closed = True
            self.waiting = None
            for key, command in list(self.running.items()):
                command.cancel()
                request, decision, began = self.begun[key]
                self.service.audit.cancelled(
                    request, self.identity, self.peer, decision.reason, time.monotonic() - began
                )
            self.running.clear()
            if not reader.done():
                reader.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await asyncio.wait([reader], timeout=_STOP_WAIT_S)

    async def _read(self, request_iterator: AsyncIterator[Any]) -> None:
        try:
            async for request in request_iterator:
                if self.free > 0:
                    self._begin(request)
                else:
                    self.waiting = request
                    self.slot_given = self.loop.create_future()
                    await self.slot_given  # _finished starts it (or drops it after a refusal)
                if self.refusal is not None:
                    break
        except BaseException:
            self.read_failed = True
            raise
        finally:
            self.reading = False
            self._wake()

    def _begin(self, request: Any) -> None:
        """Admit and start one request now (a slot is free)."""
        if self.refusal is not None or self.closed:
            return
        try:
            decision = self.service.admit(request, self.context, self.identity)
        except _Refused as refused:
            self.refusal = refused
            return
        key = next(self.serial)
        self.free -= 1
        self.begun[key] = (request, decision, time.monotonic())
        on_done = functools.partial(self._finished, key)
        try:
            command = self.service.runner.start(
                request.cmd, request.cmdtyp, request.cmdusr, on_done=on_done
            )
        except Exception:
            self.free += 1
            self.begun.pop(key, None)
            self._fail(request)
            return
        if command is not None:
            self.running[key] = command

    def _finished(self, key: int, outcome: Outcome) -> None:
        request, decision, began = self.begun.pop(key)
        duration_s = time.monotonic() - began
        self.running.pop(key, None)
        self.free += 1
        try:
            if isinstance(outcome, Exception):
                raise outcome
            if self.waiting is not None:
                # Start the next command first: it runs while this result is sent.
                waiting, self.waiting = self.waiting, None
                self._begin(waiting)
            self.responses.append(
                self.service.report(
                    request, outcome, duration_s, self.identity, self.peer, decision
                )
            )
        except Exception:
            self._fail(request)
        finally:
            self.waiting = None  # after a refusal it is never started
            if self.slot_given is not None and not self.slot_given.done():
                self.slot_given.set_result(None)
            self._wake()

    def _fail(self, request: Any) -> None:
        # A server bug must not pass for a clean end with a missing result.
        log.exception("internal error running tid=%d", request.tid)
        if self.refusal is None:
            self.refusal = _Refused(
                grpc.StatusCode.INTERNAL, f"internal error running tid {request.tid}"
            )

    def _wake(self) -> None:
        if self.wakeup is not None and not self.wakeup.done():
            self.wakeup.set_result(None)
