"""What a RemSvc task tells lineage tools: which server, which commands, how many.

OpenLineage (through the OpenLineage provider) asks the operator for facets when a
task completes; Airflow's hook-level lineage collector takes extras from hooks. Both
get the same small record, built here from the run's outcome: the server as the
namespace (``remsvc://host:port``), the commands' hashes (CRC-32 of their text, as
on the wire: which commands ran, without their text or outputs) and counts. Every
import of a lineage package is lazy and optional: without it nothing happens.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass
from typing import Any

from remsvc_core.results import StreamOutcome

__all__ = ["LINEAGE_KEY", "LineageRecord", "lineage_record", "operator_lineage", "report_to_hook"]

LINEAGE_KEY = "remsvc"
# OpenLineage wants a schema URL per custom facet; the facet is described in
# docs/dag-authors.md, and .invalid says this address is a name, not a place to fetch.
_SCHEMA_URL = "https://remsvc.invalid/openlineage/RemSvcRunFacet.json"
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class LineageRecord:
    """One run as lineage tools see it."""

    namespace: str
    commands: int
    results: int
    failed: int
    status: str
    command_hashes: tuple[str, ...]


def lineage_record(outcome: StreamOutcome, target: str) -> LineageRecord:
    return LineageRecord(
        namespace=f"remsvc://{outcome.target or target}",
        commands=len(outcome.commands),
        results=len(outcome.results),
        failed=sum(1 for result in outcome.results.values() if result.rc != 0),
        status=outcome.status_code,
        command_hashes=tuple(command.hsh for command in outcome.commands),
    )


def operator_lineage(record: LineageRecord | None) -> Any:
    """An OpenLineage ``OperatorLineage`` with a ``remsvc`` run facet, or None when the
    OpenLineage provider is not installed or nothing ran."""
    if record is None:
        return None
    try:
        from airflow.providers.openlineage.extractors import OperatorLineage
        from attrs import define
        from openlineage.client.generated.base import RunFacet
    except ImportError:
        return None

    @define
    class RemSvcRunFacet(RunFacet):  # type: ignore[misc]
        """The RemSvc batch of this run (see remsvc_provider._lineage)."""

        namespace: str
        commands: int
        results: int
        failed: int
        status: str
        commandHashes: list[str]  # OpenLineage facets name their fields in camelCase

        @staticmethod
        def _get_schema() -> str:
            return _SCHEMA_URL

    facet = RemSvcRunFacet(
        namespace=record.namespace,
        commands=record.commands,
        results=record.results,
        failed=record.failed,
        status=record.status,
        commandHashes=list(record.command_hashes),
    )
    return OperatorLineage(run_facets={LINEAGE_KEY: facet})


def report_to_hook(hook: Any, record: LineageRecord) -> None:
    """Give the record to Airflow's hook-level lineage collector (Task SDK 3.2+)."""
    try:
        from airflow.sdk.lineage import get_hook_lineage_collector
    except ImportError:
        return
    try:
        get_hook_lineage_collector().add_extra(context=hook, key=LINEAGE_KEY, value=asdict(record))
    except Exception:  # lineage must never fail a task that ran
        log.debug("hook lineage collector refused the remsvc record", exc_info=True)
