"""The ``RS.RemSvc`` servicer: Ping, GetStatus, RemCmd and RemCmdStrm; and
``RS.RemSvcExt`` for kept batches.

Before a command runs it passes two gates, in upstream's order: the CRC-32 check of a
non-empty ``hsh`` (INVALID_ARGUMENT "hash mismatch") and the allow/deny lists
(PERMISSION_DENIED). Either failure ends the call; on a stream, results of commands
that already ran have been sent and commands still running are allowed to finish
and are sent too, then the stream ends with that status.

A stream runs one command at a time in arrival order, like upstream; with
``max_parallel`` > 1 up to that many run at once and responses go out as commands
finish (clients correlate by ``tid``). When the call ends early — the client cancels,
its deadline passes, the server shuts down — every running command's process group
is killed, unless the stream belongs to a kept batch (``batch/1``), which goes on
(:mod:`remsvc_core.server.batches`). A stream itself is
:class:`~remsvc_core.server.streaming.StreamCall`.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from typing import Any

import grpc
from grpc import aio

from remsvc_core import extensions as ext
from remsvc_core.hashing import command_hash
from remsvc_core.printable import printable
from remsvc_core.server.audit import AuditLog
from remsvc_core.server.auth import current_identity
from remsvc_core.server.batch_registry import BatchRegistry
from remsvc_core.server.config import ServerConfig
from remsvc_core.server.execution import Refusal
from remsvc_core.server.limits import Limits
from remsvc_core.server.outcome import ExecResult
from remsvc_core.server.policy import CommandPolicy, Decision
from remsvc_core.server.responses import result_message
from remsvc_core.server.runner import CommandRunner
from remsvc_core.server.streaming import StreamCall
from remsvc_core.wire import pb, pb_grpc

__all__ = ["RemSvcExtService", "RemSvcService", "peer_of"]

log = logging.getLogger("remsvc.server")


class RemSvcService(pb_grpc.RemSvcServicer):  # type: ignore[misc]
    def __init__(
        self,
        runner: CommandRunner,
        policy: CommandPolicy,
        *,
        max_parallel: int = 1,
        audit: AuditLog | None = None,
        extensions: frozenset[str] = frozenset(),
        batches: BatchRegistry | None = None,
        idle_timeout_s: float | None = None,
        limits: Limits | None = None,
    ) -> None:
        self.runner = runner
        self.policy = policy
        self.max_parallel = max_parallel
        self.audit = audit or AuditLog(None)
        self.extensions = extensions
        self.batches = batches
        self.idle_timeout_s = idle_timeout_s
        self.limits = limits or Limits(ServerConfig())
        self.started = time.monotonic()
        self.commands_run = 0
        self.draining = False

    def grant(self, asked: ext.Request, identity: str) -> frozenset[str]:
        """The extensions a stream gets: what it asked for and this server offers;
        batch/1 only where batches are kept and this one fits."""
        granted = asked.extensions & self.extensions
        if ext.BATCH in granted and (
            self.batches is None
            or asked.batch_key is None
            or not self.batches.available(identity, asked.batch_key)
        ):
            granted -= {ext.BATCH}
        return granted

    async def Ping(self, request: Any, context: aio.ServicerContext[Any, Any]) -> Any:
        return pb.PongMsg(seq=request.seq, time=request.time, data=request.data)

    async def GetStatus(self, request: Any, context: aio.ServicerContext[Any, Any]) -> Any:
        uptime = int(time.monotonic() - self.started)
        return pb.StatusMsg(rc=0, msg=f"state=OK uptime={uptime}s commands={self.commands_run}")

    async def RemCmd(self, request: Any, context: aio.ServicerContext[Any, Any]) -> Any:
        identity, peer = current_identity.get(), context.peer()
        slots = self.limits.slots(identity)
        await slots.acquire()  # its turn, past [limits]' commands at once
        try:
            decision = self.admit(request, context, identity)
        except Refusal as refused:
            slots.release()
            await context.abort(refused.code, refused.details)
        began = time.monotonic()
        try:
            result = await self.runner.run(request.cmd, request.cmdtyp, request.cmdusr)
        except asyncio.CancelledError:
            self.audit.cancelled(request, identity, peer, decision.reason, time.monotonic() - began)
            raise
        finally:
            slots.release()
        self.report(request, result, time.monotonic() - began, identity, peer, decision)
        return result_message(request.tid, request.hsh, result)

    async def RemCmdStrm(
        self, request_iterator: AsyncIterator[Any], context: aio.ServicerContext[Any, Any]
    ) -> AsyncIterator[Any]:
        async for response in StreamCall(self, context).serve(request_iterator):
            yield response

    def admit(
        self, request: Any, context: aio.ServicerContext[Any, Any] | None, identity: str
    ) -> Decision:
        """Raise :class:`Refusal` if the command must not run; else the policy's decision
        (for ``identity``, running as ``request.cmdusr``), which names the rule.
        ``context`` is the call it came on (None for a kept batch's command while no
        stream is attached). A refusal is audited."""
        peer = peer_of(context)
        try:
            return self._admit(request, peer, identity)
        except Refusal as refused:
            self.audit.refused(request, identity, peer, refused.code.name, refused.details)
            raise

    def _admit(self, request: Any, peer: str, identity: str) -> Decision:
        if self.draining:
            raise Refusal(grpc.StatusCode.UNAVAILABLE, "server is shutting down")
        if request.hsh and request.hsh != command_hash(request.cmd):
            log.warning(
                "refused tid=%d identity=%s src=%r peer=%s: hash mismatch",
                request.tid,
                identity,
                request.src,
                peer,
            )
            raise Refusal(grpc.StatusCode.INVALID_ARGUMENT, "hash mismatch")
        decision = self.policy.check(request.cmd, identity, request.cmdusr)
        if not decision.allowed:
            log.warning(
                "refused tid=%d identity=%s src=%r peer=%s: %s",
                request.tid,
                identity,
                request.src,
                peer,
                decision.reason,
            )
            raise Refusal(grpc.StatusCode.PERMISSION_DENIED, decision.reason)
        return decision

    def report(
        self,
        request: Any,
        result: ExecResult,
        duration_s: float,
        identity: str,
        peer: str,
        decision: Decision,
    ) -> None:
        """Log and audit the finished command (one INFO line each)."""
        self.commands_run += 1
        if log.isEnabledFor(logging.INFO):
            # One line per command, so built the cheap way: a record made directly skips
            # the caller lookup of log.info(), which cost more than the rest of the line.
            log.handle(
                log.makeRecord(
                    log.name,
                    logging.INFO,
                    __file__,
                    0,
                    "command identity=%s src=%r tid=%d rc=%d duration_ms=%d%s%s",
                    (
                        identity,
                        request.src,
                        request.tid,
                        result.rc,
                        round(duration_s * 1000),
                        f" user={printable(request.cmdusr)}" if request.cmdusr else "",
                        " timed_out" if result.timed_out else "",
                    ),
                    None,
                )
            )
        self.audit.command(request, identity, peer, decision.reason, result, duration_s)
        if log.isEnabledFor(logging.DEBUG):
            log.debug("command tid=%d cmd=%r pid=%s", request.tid, request.cmd[:200], result.pid)


class RemSvcExtService(pb_grpc.RemSvcExtServicer):  # type: ignore[misc]
    """``RS.RemSvcExt``: cancel or look at a kept batch, by key, of the caller's own."""

    def __init__(self, batches: BatchRegistry | None) -> None:
        self.batches = batches

    async def CancelBatch(self, request: Any, context: aio.ServicerContext[Any, Any]) -> Any:
        identity = current_identity.get()
        batches = await self._batches(request, context)
        log.info("cancel requested for batch %r by %s", request.key, identity)
        return pb.BatchState(**batches.cancel(identity, request.key, by=identity))

    async def GetBatch(self, request: Any, context: aio.ServicerContext[Any, Any]) -> Any:
        batches = await self._batches(request, context)
        return pb.BatchState(**batches.describe(current_identity.get(), request.key))

    async def _batches(self, request: Any, context: aio.ServicerContext[Any, Any]) -> BatchRegistry:
        if self.batches is None:
            await context.abort(
                grpc.StatusCode.FAILED_PRECONDITION,
                "this server keeps no batches ([batches] state_dir is not set)",
            )
        try:
            ext.check_batch_key(request.key)
        except ValueError as exc:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc))
        assert self.batches is not None
        return self.batches


def peer_of(context: aio.ServicerContext[Any, Any] | None) -> str:
    """Who a call comes from, for logs and the audit (a kept batch may have no call)."""
    return context.peer() if context is not None else "(no stream attached)"
