"""The same batch on many hosts at once: rate control, an error budget, one result set.

:func:`run_fleet` (and its twin :func:`run_fleet_sync`) runs one stream per host, at
most ``max_concurrency`` at a time, stops starting hosts once ``max_errors`` failed,
and returns a :class:`FleetOutcome` keyed by host label; :func:`judge_fleet` says
whether the run met its ``success_threshold``. Result handlers take
:meth:`FleetOutcome.raw_results`: every result with a ``host`` key.

The runner is imported on first use, so reading a fan-out's outcome (an Airflow
worker resuming a task) does not import gRPC.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from remsvc_core.fleet.budget import DEFAULT_MAX_CONCURRENCY, FleetLimits, fleet_limits
from remsvc_core.fleet.outcome import FAILED, NOT_STARTED, SUCCESS, FleetOutcome, HostRun
from remsvc_core.fleet.targets import FleetTarget, default_label, fleet_targets
from remsvc_core.fleet.verdict import FleetVerdict, judge_fleet, verdict_summary

_RUNNER = ("host_batch_key", "run_fleet", "run_fleet_sync")

__all__ = [
    "DEFAULT_MAX_CONCURRENCY",
    "FAILED",
    "NOT_STARTED",
    "SUCCESS",
    "FleetLimits",
    "FleetOutcome",
    "FleetTarget",
    "FleetVerdict",
    "HostRun",
    "default_label",
    "fleet_limits",
    "fleet_targets",
    "host_batch_key",
    "judge_fleet",
    "run_fleet",
    "run_fleet_sync",
    "verdict_summary",
]


def __getattr__(name: str) -> Any:
    if name not in _RUNNER:
        raise AttributeError(f"module 'remsvc_core.fleet' has no attribute {name!r}")
    from remsvc_core.fleet import runner  # the engine, and with it gRPC

    return getattr(runner, name)


if TYPE_CHECKING:
    from remsvc_core.fleet.runner import (
        host_batch_key as host_batch_key,
        run_fleet as run_fleet,
        run_fleet_sync as run_fleet_sync,
    )
