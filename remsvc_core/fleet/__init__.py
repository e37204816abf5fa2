"""The same batch on many hosts at once: rate control, an error budget, one result set.

:func:`run_fleet` (and its twin :func:`run_fleet_sync`) runs one stream per host, at
most ``max_concurrency`` at a time, stops starting hosts once ``max_errors`` failed,
and returns a :class:`FleetOutcome` keyed by host label; :func:`judge_fleet` says
whether the run met its ``success_threshold``. Result handlers take
:meth:`FleetOutcome.raw_results`: every result with a ``host`` key.

Names are imported on first use, so reading a fan-out's outcome (an Airflow worker
resuming a task) does not import gRPC.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

_EXPORTS = {
    "DEFAULT_MAX_CONCURRENCY": "remsvc_core.fleet.budget",
    "FleetLimits": "remsvc_core.fleet.budget",
    "fleet_limits": "remsvc_core.fleet.budget",
    "FAILED": "remsvc_core.fleet.outcome",
    "NOT_STARTED": "remsvc_core.fleet.outcome",
    "SUCCESS": "remsvc_core.fleet.outcome",
    "FleetOutcome": "remsvc_core.fleet.outcome",
    "HostRun": "remsvc_core.fleet.outcome",
    "host_batch_key": "remsvc_core.fleet.runner",
    "run_fleet": "remsvc_core.fleet.runner",
    "run_fleet_sync": "remsvc_core.fleet.runner",
    "FleetTarget": "remsvc_core.fleet.targets",
    "default_label": "remsvc_core.fleet.targets",
    "fleet_targets": "remsvc_core.fleet.targets",
    "FleetVerdict": "remsvc_core.fleet.verdict",
    "judge_fleet": "remsvc_core.fleet.verdict",
    "verdict_summary": "remsvc_core.fleet.verdict",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'remsvc_core.fleet' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


if TYPE_CHECKING:
    from remsvc_core.fleet.budget import (
        DEFAULT_MAX_CONCURRENCY as DEFAULT_MAX_CONCURRENCY,
        FleetLimits as FleetLimits,
        fleet_limits as fleet_limits,
    )
    from remsvc_core.fleet.outcome import (
        FAILED as FAILED,
        NOT_STARTED as NOT_STARTED,
        SUCCESS as SUCCESS,
        FleetOutcome as FleetOutcome,
        HostRun as HostRun,
    )
    from remsvc_core.fleet.runner import (
        host_batch_key as host_batch_key,
        run_fleet as run_fleet,
        run_fleet_sync as run_fleet_sync,
    )
    from remsvc_core.fleet.targets import (
        FleetTarget as FleetTarget,
        default_label as default_label,
        fleet_targets as fleet_targets,
    )
    from remsvc_core.fleet.verdict import (
        FleetVerdict as FleetVerdict,
        judge_fleet as judge_fleet,
        verdict_summary as verdict_summary,
    )
