"""What makes a deferred batch durable: its key, its retries, and the shapes of events
written by another version of this provider.

**The key.** A task instance's batch is named from its DAG, task, run, map index and
try number, plus a hash of the commands actually sent, so a trigger that Airflow runs
again (triggerer failover, reassignment, restart) re-attaches to the same batch on a
server that keeps batches, and a different batch can never be mistaken for it. It is
derived in the triggerer from the trigger's task instance, not serialized: a trigger
serialized by this version stays readable by 1.0.0 (a rollback does not strand it).

**Resuming a retry** (``on_retry="resume"``): when a try fails, the results of the
commands that succeeded are kept in Airflow 3.3's task state store (XCom is cleared
between tries); the next try sends only the others and reports all of them.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from remsvc_core.commands import Command
from remsvc_core.results import CommandResult, StreamOutcome

__all__ = [
    "ON_RETRY_CHOICES",
    "RESUME_KEY",
    "batch_hash",
    "batch_key",
    "load_resume",
    "merge_resumed",
    "outcome_from_event",
    "save_resume",
]

ON_RETRY_CHOICES = ("rerun", "resume")
#: The task state store key holding the succeeded results of earlier tries.
RESUME_KEY = "remsvc.resume"
_KEY_CHARS = re.compile(r"[^A-Za-z0-9._:/-]+")
_READABLE = 120


def batch_hash(commands: Sequence[Command]) -> str:
    """A hash of what the batch runs (each command's tid, type, user and text)."""
    text = json.dumps([[c.tid, c.cmdtyp, c.cmdusr, c.cmd] for c in commands])
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()


def batch_key(ti: Any, commands: Sequence[Command]) -> str | None:
    """The batch key of ``ti``'s try for ``commands``; None without a task instance."""
    try:
        parts = [ti.dag_id, ti.task_id, ti.run_id, ti.map_index, ti.try_number]
    except AttributeError:
        return None
    if any(part is None for part in parts):
        return None
    dag_id, task_id, run_id, map_index, try_number = parts
    mapped = f"[{map_index}]" if map_index is not None and int(map_index) >= 0 else ""
    readable = _KEY_CHARS.sub("_", f"airflow:{dag_id}.{task_id}{mapped}:{run_id}")[:_READABLE]
    identity = hashlib.sha256(
        json.dumps([dag_id, task_id, run_id, map_index, try_number]).encode()
    ).hexdigest()[:16]
    return f"{readable}:try{int(try_number)}:{identity}:{batch_hash(commands)[:24]}"


def save_resume(
    store: Any, commands: Sequence[Command], outcome: StreamOutcome, accepted: Iterable[int]
) -> int:
    """Keep the results that succeeded (``rc`` in ``accepted``) for the next try;
    returns how many. Results of earlier tries already in ``outcome`` count too."""
    codes = set(accepted)
    succeeded = {
        str(tid): result.to_json() for tid, result in outcome.results.items() if result.rc in codes
    }
    store.set(RESUME_KEY, {"batch": batch_hash(commands), "results": succeeded})
    return len(succeeded)


def load_resume(store: Any, commands: Sequence[Command]) -> dict[int, CommandResult]:
    """The results an earlier try kept for this very batch (nothing if it changed)."""
    kept = store.get(RESUME_KEY)
    if not isinstance(kept, Mapping) or kept.get("batch") != batch_hash(commands):
        return {}
    results = kept.get("results") or {}
    return {int(tid): CommandResult.from_json(data) for tid, data in results.items()}


def merge_resumed(
    outcome: StreamOutcome, commands: Sequence[Command], earlier: Mapping[int, CommandResult]
) -> StreamOutcome:
    """This try's outcome (of the commands it sent) with the earlier tries' successes."""
    outcome.commands = list(commands)
    for tid, result in earlier.items():
        outcome.results.setdefault(tid, result)
    outcome.results = dict(sorted(outcome.results.items()))
    return outcome


def outcome_from_event(
    event: Mapping[str, Any], commands: Sequence[Command]
) -> StreamOutcome | None:
    """An outcome from an event of airflow-provider-remsvc 1.0.0's trigger, which carried
    the XCom shape itself (``state``, ``results``, ``error_msg``): a rolling upgrade can
    resume a task whose trigger ran under 1.0.0. None for any other event."""
    if "results" not in event or "state" not in event:
        return None
    results = {}
    for item in event.get("results") or []:
        result = CommandResult.from_json(item)
        results[result.tid] = result
    succeeded = event.get("state") == "SUCCESS"
    return StreamOutcome(
        commands=list(commands),
        results=results,
        status_code="OK" if succeeded else "UNKNOWN",
        status_details="" if succeeded else str(event.get("error_msg") or "failed under 1.0.0"),
    )
