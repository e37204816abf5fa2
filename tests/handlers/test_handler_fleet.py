"""The built-in handlers on a fan-out's results: every result carries its host.

One fan-out runs for real (five labels on two reference servers, one of which cuts a
slow command short, so its output differs); the rest are hand-built rows.
"""

from __future__ import annotations

from typing import Any

import pandas as pd
import pytest

from remsvc_core.errors import HandlerError
from remsvc_core.fleet import FleetOutcome, run_fleet_sync
from remsvc_core.handlers import resolve_handler
from remsvc_core.hashing import command_hash
from remsvc_core.hostlist import RANGE_DASH
from remsvc_handlers.grouped import grouped
from remsvc_handlers.sorted import sorted_results

COMMANDS = ["sleep 1; echo ready", "echo same"]


@pytest.fixture
def fleet(remsvc_server_factory: Any) -> FleetOutcome:
    usual, hasty = remsvc_server_factory(), remsvc_server_factory(cmd_timeout_ms=200)
    hosts = {f"web{i}": usual.settings() for i in range(1, 5)}
    hosts["web5"] = hasty.settings()
    return run_fleet_sync(COMMANDS, hosts)


def row(host: str, tid: int, rc: int = 0, out: str = "", cmd: str = "echo") -> dict[str, Any]:
    return {"host": host, "tid": tid, "rc": rc, "out": out, "err": "",
            "hsh": command_hash(cmd), "cmd": cmd}  # fmt: skip


def test_grouped_gives_one_row_per_command_and_output(fleet: FleetOutcome) -> None:
    groups = resolve_handler("grouped").apply(fleet)

    assert [(g["tid"], g["hosts"], g["host_count"], g["rc"]) for g in groups] == [
        (1, f"web1{RANGE_DASH}web4", 4, 0),
        (1, "web5", 1, 1),
        (2, f"web1{RANGE_DASH}web5", 5, 0),
    ]
    assert groups[0]["out"] == "ready\n"
    assert groups[1]["err"] == "process timed out"
    assert {g["cmd"] for g in groups} == set(COMMANDS)
    # Read as dshbak -c would show it.
    first = "; ".join(f"{g['hosts']}: {(g['out'] or g['err']).strip()}" for g in groups[:2])
    assert first == f"web1{RANGE_DASH}web4: ready; web5: process timed out"


def test_grouped_compares_only_what_it_is_told() -> None:
    rows = [row("a1", 1, 0, "x"), row("a2", 1, 3, "x"), row("a3", 1, 0, "y")]
    assert [(g["hosts"], g["out"]) for g in grouped(rows, compare=["out"])] == [
        ("a1, a2", "x"),
        ("a3", "y"),
    ]
    assert "rc" not in grouped(rows, compare="out")[0]
    assert len(grouped(rows)) == 3  # rc, out and err by default
    with pytest.raises(HandlerError, match="give one or more of rc, out, err"):
        resolve_handler({"name": "grouped", "options": {"compare": ["stdout"]}})


def test_grouped_needs_hosts() -> None:
    with pytest.raises(HandlerError, match="these results have no 'host'"):
        resolve_handler("grouped").apply({1: {"tid": 1, "rc": 0, "out": "", "err": ""}})
    assert grouped([]) == []


def test_dataframe_has_a_host_column_first(fleet: FleetOutcome) -> None:
    frame = resolve_handler("dataframe").apply(fleet)

    assert list(frame.columns) == ["host", "tid", "cmd", "rc", "out", "err", "hsh"]
    assert str(frame["host"].dtype) == "string"
    assert list(frame["host"]) == [f"web{i}" for i in range(1, 6) for _ in COMMANDS]
    assert list(frame["tid"]) == [1, 2] * 5
    per_host = frame.groupby("host")["rc"].apply(lambda rc: bool((rc == 0).all()))
    assert per_host.to_dict() == {"web1": True, "web2": True, "web3": True, "web4": True,
                                  "web5": False}  # fmt: skip
    # A single host's frame is what it always was: no host column.
    assert "host" not in resolve_handler("dataframe").apply({}).columns


def test_sorted_keeps_hosts_in_their_order_and_tids_within_each() -> None:
    rows = [row("db2", 2), row("db10", 1), row("db2", 1), row("db10", 2), row("db1", 1)]
    assert [(r["host"], r["tid"]) for r in sorted_results(rows)] == [
        ("db2", 1), ("db2", 2), ("db10", 1), ("db10", 2), ("db1", 1),
    ]  # fmt: skip


def test_rc_filter_and_verify_hash_judge_each_hosts_rows(fleet: FleetOutcome) -> None:
    failures = resolve_handler([{"name": "rc_filter", "options": {"keep": "failures"}}])
    assert [(r["host"], r["tid"]) for r in failures.apply(fleet)] == [("web5", 1)]
    lenient = resolve_handler({"name": "rc_filter", "options": {"accept": [0, 1]}})
    assert lenient.failed_tids({}) == []
    assert len(resolve_handler("verify_hash").apply(fleet)) == 10

    tampered = [*fleet.raw_results()]
    tampered[3] = {**tampered[3], "hsh": "00000000"}
    with pytest.raises(HandlerError) as caught:
        resolve_handler("verify_hash").apply(tampered)
    assert "tid 2 on web2: got '00000000'" in str(caught.value)


def test_a_pipeline_over_a_fleet_into_one_frame(fleet: FleetOutcome) -> None:
    frame = resolve_handler(["verify_hash", "sorted", "dataframe"]).apply(fleet)
    assert isinstance(frame, pd.DataFrame)
    assert frame.shape == (10, 7)
    assert frame.columns[0] == "host"
