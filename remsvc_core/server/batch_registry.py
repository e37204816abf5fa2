"""Every kept batch of the server, by identity and key (``batch/1``).

The registry attaches streams to their :class:`~remsvc_core.server.batches.KeptBatch`
(made on first use, or read back from the journal after a restart), answers
``RemSvcExt`` (cancel, describe), and stops every batch when the server stops.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol

import grpc

from remsvc_core.server.batches import STOPPED, KeptBatch
from remsvc_core.server.execution import Execution, Refusal
from remsvc_core.server.journal import BatchJournal, Journal, JournalFull
from remsvc_core.server.outcome import ExecResult
from remsvc_core.server.runner import CommandRunner

if TYPE_CHECKING:
    from remsvc_core.server.streaming import StreamCall

__all__ = ["Admission", "BatchRegistry"]


class Admission(Protocol):
    """The service's gates, log line and audit, as kept batches use them."""

    audit: Any
    limits: Any

    def admit(self, request: Any, context: Any, identity: str) -> Any: ...

    def report(
        self,
        request: Any,
        result: ExecResult,
        duration_s: float,
        identity: str,
        peer: str,
        decision: Any,
    ) -> None: ...


class BatchRegistry:
    """Every kept batch of the server, by identity and key."""

    def __init__(
        self,
        journal: Journal,
        runner: CommandRunner,
        *,
        grace_s: int,
        max_parallel: int = 1,
    ) -> None:
        self.journal = journal
        self.runner = runner
        self.grace_s = grace_s
        self.output_cap = runner.limits.output_cap
        self._max_parallel = max_parallel
        self._service: Admission | None = None
        self._batches: dict[tuple[str, str], KeptBatch] = {}

    def admit_through(self, service: Admission) -> None:
        """Commands of kept batches pass the same gates, and are logged the same way, as
        every other command: the service's."""
        self._service = service

    def report(
        self,
        request: Any,
        result: ExecResult,
        duration_s: float,
        identity: str,
        peer: str,
        decision: Any,
    ) -> None:
        assert self._service is not None
        self._service.report(request, result, duration_s, identity, peer, decision)

    def audit_cancelled(
        self, request: Any, identity: str, peer: str, reason: str, duration_s: float
    ) -> None:
        assert self._service is not None
        self._service.audit.cancelled(request, identity, peer, reason, duration_s)

    def available(self, identity: str, key: str) -> bool:
        """Whether this batch can be kept (its journal exists or fits in the budget)."""
        if (identity, key) in self._batches or self.journal.path_for(identity, key).exists():
            return True
        self.journal.sweep()
        return self.journal.total_bytes() + (1 << 20) <= self.journal.max_bytes

    def attach(self, identity: str, key: str, stream: StreamCall) -> KeptBatch:
        batch = self._batches.get((identity, key))
        if batch is None:
            try:
                journal = self.journal.open(identity, key)
            except JournalFull as exc:
                raise Refusal(grpc.StatusCode.RESOURCE_EXHAUSTED, str(exc)) from None
            batch = KeptBatch(self, identity, key, journal, self._execution)
            self._batches[(identity, key)] = batch
        batch.attach(stream)
        return batch

    def _execution(self, batch: KeptBatch) -> Execution:
        assert self._service is not None
        return Execution(
            self.runner,
            batch,
            admit=lambda request: self._admit(request, batch),
            # Its commands take the identity's slots as they start, stream or not.
            slots=self._service.limits.slots(batch.identity),
            max_parallel=self._max_parallel,
            live_output=True,  # kept on disk, so a re-attached client gets it again
            usage=True,
        )

    def _admit(self, request: Any, batch: KeptBatch) -> Any:
        assert self._service is not None
        context = batch.stream.context if batch.stream is not None else None
        return self._service.admit(request, context, batch.identity)

    def forget(self, batch: KeptBatch) -> None:
        """A batch with nothing running or attached leaves memory; its journal stays."""
        if self._batches.get((batch.identity, batch.key)) is batch and batch.stream is None:
            del self._batches[(batch.identity, batch.key)]
            batch.journal.close()

    def describe(self, identity: str, key: str) -> dict[str, Any]:
        batch = self._batches.get((identity, key))
        journal = batch.journal if batch is not None else self._read(identity, key)
        if journal is None:
            return {"key": key, "state": "unknown", "finished_tids": [], "running_tid": 0}
        finished = sorted(t for t, r in journal.records.items() if r.result is not None)
        running = batch.execution.running_tids if batch is not None else []
        if batch is not None:
            state = batch.state
        elif journal.state in ("cancelled", "abandoned"):
            state = journal.state
        else:
            state = "finished"
        return {
            "key": key,
            "state": state,
            "finished_tids": finished,
            "running_tid": running[0] if running else 0,
        }

    def cancel(self, identity: str, key: str, by: str) -> dict[str, Any]:
        batch = self._batches.get((identity, key))
        if batch is None:
            journal = self._read(identity, key)
            if journal is None:
                return self.describe(identity, key)
            if journal.state == "open":
                journal.set_state("cancelled")
            journal.close()
        else:
            batch.cancel(by)
        return self.describe(identity, key)

    def _read(self, identity: str, key: str) -> BatchJournal | None:
        if not self.journal.path_for(identity, key).exists():
            return None
        return self.journal.open(identity, key)

    def stop_all(self) -> None:
        """Server shutdown, after the drain: kill what still runs in every batch and
        journal it as killed by the stop (commands that never started run when a client
        re-attaches to the restarted server)."""
        for batch in list(self._batches.values()):
            if batch.grace is not None:
                batch.grace.cancel()
            batch.kill_active(STOPPED)
            batch.journal.close()
        self._batches.clear()
