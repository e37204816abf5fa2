"""Kept batches (``batch/1``): batches that outlive their stream.

A keyed stream attaches to its :class:`KeptBatch` (made on first use, or read back
from the journal after a restart). The batch owns the execution, so commands go on
when the stream is lost; every start is written ahead to the journal and every
result journaled with its output kept on disk, so a stream that attaches again gets
finished results replayed, running ones when they end, and runs the rest, once.
The contract is docs/protocol-extensions.md; the disk format is
:mod:`remsvc_core.server.journal`.

One stream at a time: a second attach gets ``ABORTED`` (nothing runs for it). A lost
stream leaves the batch running for ``grace_s``; then what runs is killed and what
waits is dropped (it never ran, so a later attach runs it). An explicit cancel kills
and stops the batch for good.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import time
from collections.abc import Callable
from typing import IO, TYPE_CHECKING, Any

import grpc

from remsvc_core import extensions
from remsvc_core.output import capped_text
from remsvc_core.server.capture import CLASSIC_CAP
from remsvc_core.server.execution import Execution, Refusal
from remsvc_core.server.journal import BatchJournal
from remsvc_core.server.outcome import ExecResult, ResourceUsage

if TYPE_CHECKING:
    from remsvc_core.server.batch_registry import BatchRegistry
    from remsvc_core.server.streaming import StreamCall

__all__ = ["KeptBatch", "fingerprint"]

log = logging.getLogger("remsvc.server")

KILLED_RC = 137  # what a shell reports for SIGKILL
INTERRUPTED = "interrupted: the server stopped while the command ran"
STOPPED = "killed: the server was stopped while the command ran"


def fingerprint(request: Any) -> str:
    """What makes a command the same command: its type, user and text."""
    text = f"{request.cmdtyp}\0{request.cmdusr}\0{request.cmd}"
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()


class KeptBatch:
    """One keyed batch: its execution, its journal, and the stream attached to it."""

    def __init__(
        self,
        registry: BatchRegistry,
        identity: str,
        key: str,
        journal: BatchJournal,
        execution_factory: Callable[[KeptBatch], Execution],
    ) -> None:
        self.registry = registry
        self.identity = identity
        self.key = key
        self.journal = journal
        self.stream: StreamCall | None = None
        self.active: dict[int, Any] = {}  # tid -> request, waiting or running here
        self.spools: dict[tuple[int, int], IO[bytes]] = {}
        self.grace: asyncio.TimerHandle | None = None
        self.execution = execution_factory(self)

    @property
    def state(self) -> str:
        if self.journal.state in ("cancelled", "abandoned"):
            return self.journal.state
        if self.stream is not None:
            return "running"
        return "detached" if self.active else "finished"

    # -- streams ---------------------------------------------------------------------

    def attach(self, stream: StreamCall) -> None:
        if self.stream is not None:
            raise Refusal(
                grpc.StatusCode.ABORTED,
                f"{extensions.ATTACHED_ELSEWHERE}: batch {self.key!r} is attached to another "
                f"stream ({self.stream.context.peer()}); try again when it is detached",
            )
        if self.grace is not None:
            self.grace.cancel()
            self.grace = None
        self.stream = stream
        log.info("batch %r of %s: stream attached", self.key, self.identity)

    def detach(self, stream: StreamCall, *, lost: bool) -> None:
        if self.stream is not stream:
            return
        self.stream = None
        if self.journal.state != "open":
            return
        if lost and self.active:
            grace = self.registry.grace_s
            log.warning(
                "batch %r of %s: stream lost with %d command(s) running or waiting; "
                "going on for up to %ds for a client to re-attach",
                self.key,
                self.identity,
                len(self.active),
                grace,
            )
            self.grace = asyncio.get_running_loop().call_later(grace, self._grace_over)
        elif not self.active:
            self.registry.forget(self)

    def submit(self, stream: StreamCall, request: Any) -> bool:
        """Hand the attached stream what it asked for; False if it waits for that tid
        already. Raises :class:`Refusal` for a key reused for another batch."""
        tid = request.tid
        this = fingerprint(request)
        record = self.journal.records.get(tid)
        if record is not None and record.fingerprint and record.fingerprint != this:
            raise Refusal(
                grpc.StatusCode.FAILED_PRECONDITION,
                f"{extensions.KEY_REUSED}: tid {tid} of batch {self.key!r} was another command; "
                "a batch key must name one batch (put a hash of the commands in it)",
            )
        if tid in self.active:
            if self.active[tid] is not None and fingerprint(self.active[tid]) != this:
                raise Refusal(
                    grpc.StatusCode.FAILED_PRECONDITION,
                    f"{extensions.KEY_REUSED}: tid {tid} of batch {self.key!r} is another command",
                )
            self._resend_live_output(stream, tid)
            return True
        if record is not None and record.result is None:
            # Started by a server that stopped before it ended: it may have run.
            self._journal_killed(request, record.started_ms, INTERRUPTED, interrupted=True)
            record = self.journal.records[tid]
        if record is not None and record.result is not None:
            self._replay(stream, request, record.result)
            return True
        if self.journal.state == "cancelled":
            raise Refusal(
                grpc.StatusCode.FAILED_PRECONDITION,
                f"{extensions.CANCELLED_BATCH}: batch {self.key!r} was cancelled",
            )
        if self.execution.stopped is not None:
            raise self.execution.stopped
        self.active[tid] = request
        self.execution.offer(request)
        return True

    def cancel(self, by: str) -> None:
        """Kill what runs, drop what waits, and end an attached stream."""
        if self.journal.state == "cancelled":
            return
        self.kill_active("killed: batch cancelled")
        self.journal.set_state("cancelled")
        if self.stream is not None:
            self.stream.stop(Refusal(grpc.StatusCode.CANCELLED, f"batch cancelled by {by}"))
        log.warning("batch %r of %s: cancelled by %s", self.key, self.identity, by)

    def _grace_over(self) -> None:
        self.grace = None
        if self.stream is not None:
            return
        grace = self.registry.grace_s
        self.kill_active(f"killed: no client re-attached within {grace}s")
        self.journal.set_state("abandoned")
        log.warning("batch %r of %s: abandoned after %ds", self.key, self.identity, grace)
        self.registry.forget(self)

    def kill_active(self, why: str) -> None:
        """Kill what runs (journaled as killed, with ``why``) and drop what waits."""
        running = self.execution.running_tids
        self.execution.cancel(Refusal(grpc.StatusCode.CANCELLED, why))
        for tid in running:
            request = self.active.get(tid)
            if request is not None:
                self._journal_killed(request, self.journal.records[tid].started_ms, why)
                self._close_spools(tid)
        self.active.clear()

    # -- what the execution tells the batch ----------------------------------------------

    def command_starting(self, request: Any) -> None:
        tid = request.tid
        self.journal.start(tid, fingerprint(request), _now_ms())
        for fd in (1, 2):
            self.spools[(tid, fd)] = self.journal.open_spool(tid, fd)

    def command_output(self, request: Any, fd: int, data: bytes, offset: int) -> None:
        spool = self.spools.get((request.tid, fd))
        if spool is not None:
            spool.write(data)
        if self.stream is not None:
            self.stream.command_output(request, fd, data, offset)

    def command_finished(
        self, request: Any, result: ExecResult, started_ms: int, ended_ms: int, decision: Any
    ) -> None:
        tid = request.tid
        self._close_spools(tid)
        self.active.pop(tid, None)
        record = {
            "rc": result.rc,
            "hsh": request.hsh,
            "started": started_ms,
            "ended": ended_ms,
            "timed_out": result.timed_out,
            "err_text": result.err if result.timed_out else None,
            "out_size": result.out_size,
            "err_size": result.err_size,
            "out_truncated": result.out_truncated,
            "err_truncated": result.err_truncated,
            "cap": self.registry.output_cap,
        }
        if result.usage is not None:
            usage = result.usage
            record["usage"] = [usage.wall_ms, usage.user_cpu_ms, usage.sys_cpu_ms, usage.max_rss_kb]
        self.journal.finish(tid, record)
        self.registry.report(
            request, result, (ended_ms - started_ms) / 1000, self.identity, self.peer, decision
        )
        if self.stream is not None:
            self._deliver(self.stream, request, self.journal.records[tid].result or record)
        elif not self.active and self.grace is not None:
            self.grace.cancel()  # everything it had ran: nothing to wait for
            self.grace = None
            self.registry.forget(self)

    def command_cancelled(self, request: Any, decision: Any, duration_s: float) -> None:
        reason = decision.reason if decision is not None else ""
        self.registry.audit_cancelled(request, self.identity, self.peer, reason, duration_s)

    @property
    def peer(self) -> str:
        return self.stream.peer if self.stream is not None else "(no stream attached)"

    def execution_stopped(self, refusal: Refusal) -> None:
        for tid in [tid for tid in self.active if tid not in self.execution.running_tids]:
            del self.active[tid]  # refused, or behind the refused one: never started
        if self.stream is not None:
            self.stream.stop(refusal)

    # -- replies -------------------------------------------------------------------------

    def _replay(self, stream: StreamCall, request: Any, record: dict[str, Any]) -> None:
        if stream.live_output and not record.get("err_text") and not record.get("interrupted"):
            for fd in (1, 2):
                data = self._spooled(request.tid, fd)
                if data:
                    stream.deliver_output(request.tid, fd, data, 0)
        self._deliver(stream, request, record, replayed=True)

    def _deliver(
        self, stream: StreamCall, request: Any, record: dict[str, Any], *, replayed: bool = False
    ) -> None:
        interrupted = bool(record.get("interrupted"))
        streamed = stream.live_output and not record.get("err_text") and not interrupted
        cap = int(record.get("cap") or self.registry.output_cap)
        if not streamed:
            cap = min(cap, CLASSIC_CAP)  # a classic result never carries more
        if streamed or record.get("timed_out"):
            out = err = ""  # streamed: sent as chunks; timed out: discarded, as upstream does
        if not streamed:
            if not record.get("timed_out"):
                out = self._kept_text(request.tid, 1, record["out_truncated"], cap)
            err = record.get("err_text") or self._kept_text(
                request.tid, 2, record["err_truncated"], cap
            )
        usage = record.get("usage")
        result = ExecResult(
            rc=int(record["rc"]),
            out=out,
            err=err,
            streamed=streamed,
            out_size=int(record.get("out_size", 0)),
            err_size=int(record.get("err_size", 0)),
            out_truncated=bool(record.get("out_truncated")),
            err_truncated=bool(record.get("err_truncated")),
            usage=ResourceUsage(*usage) if usage else None,
        )
        stream.deliver_result(
            request,
            result,
            int(record.get("started", 0)),
            int(record.get("ended", 0)),
            replayed=replayed,
            interrupted=interrupted,
        )

    def _resend_live_output(self, stream: StreamCall, tid: int) -> None:
        """A stream re-attached to a running command: its output so far, from offset 0."""
        if not stream.live_output:
            return
        for fd in (1, 2):
            spool = self.spools.get((tid, fd))
            if spool is not None:
                spool.flush()
            data = self._spooled(tid, fd)
            if data:
                stream.deliver_output(tid, fd, data, 0)

    def _kept_text(self, tid: int, fd: int, truncated: bool, cap: int) -> str:
        data = self._spooled(tid, fd)
        if len(data) > cap:
            return capped_text(data[:cap], True, cap)
        return capped_text(data, truncated, cap)

    def _spooled(self, tid: int, fd: int) -> bytes:
        with contextlib.suppress(FileNotFoundError):
            return self.journal.spool_path(tid, fd).read_bytes()
        return b""

    def _journal_killed(
        self, request: Any, started_ms: int, why: str, *, interrupted: bool = False
    ) -> None:
        self.journal.finish(
            request.tid,
            {
                "rc": KILLED_RC,
                "hsh": request.hsh,
                "started": started_ms,
                "ended": _now_ms(),
                "err_text": why,
                "interrupted": interrupted,
                "out_size": 0,
                "err_size": 0,
                "out_truncated": False,
                "err_truncated": False,
            },
        )

    def _close_spools(self, tid: int) -> None:
        for fd in (1, 2):
            spool = self.spools.pop((tid, fd), None)
            if spool is not None:
                spool.close()


def _now_ms() -> int:
    return time.time_ns() // 1_000_000
