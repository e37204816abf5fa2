"""What a fan-out produced: one :class:`HostRun` per host, in the order the hosts were
given, and the :class:`FleetOutcome` that holds them.

Like a :class:`~remsvc_core.results.StreamOutcome`, both convert to plain JSON-safe
dicts and back (an Airflow trigger event, ``remsvc run --output json``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from remsvc_core.commands import Command
from remsvc_core.results import StreamOutcome

__all__ = ["FAILED", "HOST_STATES", "NOT_STARTED", "SUCCESS", "FleetOutcome", "HostRun"]

SUCCESS = "SUCCESS"
FAILED = "FAILED"
#: Never started, because the error budget ran out first: not a failure of its own.
NOT_STARTED = "NOT_STARTED"
HOST_STATES = (SUCCESS, FAILED, NOT_STARTED)


@dataclass(slots=True)
class HostRun:
    """One host's part of a fan-out.

    ``state`` is ``"SUCCESS"`` (every command answered with an accepted exit code, the
    stream ended OK), ``"FAILED"``, or ``"NOT_STARTED"`` (the error budget ran out
    before its turn; ``outcome`` is then None). ``target`` is the server's
    ``host:port``.
    """

    host: str
    target: str
    state: str = NOT_STARTED
    outcome: StreamOutcome | None = None

    @property
    def started(self) -> bool:
        return self.outcome is not None

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {"host": self.host, "target": self.target, "state": self.state}
        if self.outcome is not None:
            data["outcome"] = self.outcome.to_json()
        return data

    @classmethod
    def from_json(cls, data: Mapping[str, Any], commands: list[Command]) -> HostRun:
        """A run from :meth:`to_json`; ``commands`` stand in for an outcome's batch
        when its JSON left it out (a :class:`FleetOutcome` writes the batch once)."""
        outcome: Mapping[str, Any] | None = data.get("outcome")
        restored = None
        if outcome is not None:
            restored = StreamOutcome.from_json(outcome)
            if "commands" not in outcome:
                restored.commands = list(commands)
        return cls(
            host=str(data["host"]),
            target=str(data.get("target", "")),
            state=str(data.get("state", NOT_STARTED)),
            outcome=restored,
        )


@dataclass(slots=True)
class FleetOutcome:
    """Everything a fan-out produced: the batch, and each host's run in target order.

    ``max_errors`` and ``required`` are the run's limits in hosts (see
    :class:`~remsvc_core.fleet.budget.FleetLimits`); ``max_concurrency`` how many hosts
    ran at most at once.
    """

    commands: list[Command]
    hosts: list[HostRun] = field(default_factory=list)
    max_concurrency: int = 0
    max_errors: int | None = None
    required: int = 0
    elapsed_s: float = 0.0

    def host(self, label: str) -> HostRun:
        """The run of the host labelled ``label``; KeyError if there is none."""
        for run in self.hosts:
            if run.host == label:
                return run
        raise KeyError(label)

    def in_state(self, state: str) -> list[HostRun]:
        """The hosts in ``state`` (``"SUCCESS"``, ``"FAILED"``, ``"NOT_STARTED"``), in order."""
        return [run for run in self.hosts if run.state == state]

    @property
    def budget_exhausted(self) -> bool:
        """The error budget ran out before every host started."""
        return any(run.state == NOT_STARTED for run in self.hosts)

    def raw_results(self) -> list[dict[str, Any]]:
        """Every result as a dict with a ``host`` key first, host by host in target
        order and by tid within a host: what result handlers take for a fan-out."""
        return [
            {"host": run.host, **result.as_dict()}
            for run in self.hosts
            if run.outcome is not None
            for result in run.outcome.ordered_results()
        ]

    def to_json(self) -> dict[str, Any]:
        # The batch is written once; each host's outcome leaves it out.
        hosts = []
        for run in self.hosts:
            data = run.to_json()
            if "outcome" in data:
                data["outcome"].pop("commands", None)
            hosts.append(data)
        return {
            "commands": [c.as_dict() for c in self.commands],
            "hosts": hosts,
            "max_concurrency": self.max_concurrency,
            "max_errors": self.max_errors,
            "required": self.required,
            "elapsed_s": self.elapsed_s,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> FleetOutcome:
        commands = StreamOutcome.from_json({"commands": data.get("commands", [])}).commands
        max_errors = data.get("max_errors")
        return cls(
            commands=commands,
            hosts=[HostRun.from_json(item, commands) for item in data.get("hosts", [])],
            max_concurrency=int(data.get("max_concurrency", 0)),
            max_errors=None if max_errors is None else int(max_errors),
            required=int(data.get("required", 0)),
            elapsed_s=float(data.get("elapsed_s", 0.0)),
        )
