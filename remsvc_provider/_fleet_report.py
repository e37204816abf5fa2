"""What a fan-out task reports: its XCom, and the message it fails with.

The XCom keeps 1.0.0's keys and adds one per-host part::

    {
        "state": "SUCCESS" | "FAILED",       # the whole run's verdict
        "results": ...,                      # shaped by result_handler; every row has "host"
        "error_msg": None | "...",           # the failure message below
        "hosts": {                           # one entry per host, in the order given
            "web1": {"state": "SUCCESS", "conn_id": "remsvc_web1",
                     "target": "web1.example.com:50051", "status_code": "OK",
                     "error_msg": None},
            ...
        },
    }

A host's ``state`` is ``SUCCESS``, ``FAILED`` or ``NOT_STARTED`` (the error budget ran
out first); its ``error_msg`` says what failed there. The failure message names the
failing hosts with their tids, exit codes and the start of their stderr; it is
bounded in size however many hosts failed.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from remsvc_core.fleet.outcome import NOT_STARTED, FleetOutcome
from remsvc_core.fleet.verdict import FleetVerdict, verdict_summary

__all__ = ["MAX_MESSAGE_CHARS", "fleet_failure_message", "fleet_hosts"]

#: Failed hosts described one by one in the message; the rest are counted.
SHOWN_HOSTS = 10
#: However many hosts failed, the message stays below this (it goes to the task log,
#: the UI and the XCom).
MAX_MESSAGE_CHARS = 8_000


def fleet_hosts(
    fleet: FleetOutcome, judged: FleetVerdict, conn_ids: Mapping[str, str]
) -> dict[str, dict[str, Any]]:
    """The XCom's ``hosts`` part: each host's state, connection, server and error."""
    failures = dict(judged.failed)
    hosts: dict[str, dict[str, Any]] = {}
    for run in fleet.hosts:
        error = None
        if run.host in failures:
            error = verdict_summary(failures[run.host])
        elif run.state == NOT_STARTED:
            error = (
                f"not started: {len(failures)} host(s) had failed, the error budget "
                f"(max_errors={judged.max_errors})"
            )
        hosts[run.host] = {
            "state": run.state,
            "conn_id": conn_ids.get(run.host, run.host),
            "target": run.target,
            "status_code": None if run.outcome is None else run.outcome.status_code,
            "error_msg": error,
        }
    return hosts


def fleet_failure_message(task_id: str, judged: FleetVerdict) -> str | None:
    """The exception message for a failed fan-out, or None when the run succeeded."""
    if judged.ok:
        return None
    parts = [*judged.problems(), *judged.host_lines(SHOWN_HOSTS)]
    kept = (
        f"the results of the {judged.hosts - len(judged.not_started)} host(s) that ran are "
        "kept in the XCom (state FAILED), with each host's state in 'hosts'"
    )
    message = f"RemSvc fan-out task {task_id!r} failed: " + "; ".join(parts)
    if len(message) + len(kept) + 2 > MAX_MESSAGE_CHARS:
        message = message[: MAX_MESSAGE_CHARS - len(kept) - 6] + " ..."
    return f"{message}; {kept}"
