"""Outcomes keep everything that arrived and survive a JSON round-trip."""

from __future__ import annotations

import json

from remsvc_core.commands import validate_commands
from remsvc_core.results import CommandResult, StreamOutcome, UnexpectedResponse


def _outcome() -> StreamOutcome:
    commands = validate_commands([f"echo {i}" for i in range(1, 13)])
    results = {
        c.tid: CommandResult(c.tid, 0, f"{c.tid}\n", "", c.hsh, c.cmd, latency_s=0.01)
        for c in commands
        if c.tid not in (4, 11)
    }
    return StreamOutcome(
        commands=commands,
        results=results,
        unexpected=[UnexpectedResponse(tid=99, reason="unknown", rc=0, out="", err="")],
        status_code="UNAVAILABLE",
        status_details="Socket closed",
        plugin_errors=["plugin x failed"],
    )


def test_missing_tids_and_failure_description() -> None:
    outcome = _outcome()
    assert outcome.missing_tids == [4, 11]
    assert not outcome.complete
    text = outcome.describe_failure()
    assert "UNAVAILABLE: Socket closed" in text
    assert "no result for tid(s) 4, 11" in text
    assert "tid 99 (unknown)" in text
    assert "10 of 12 result(s) arrived and are kept" in text


def test_json_round_trip_is_lossless() -> None:
    outcome = _outcome()
    data = json.loads(json.dumps(outcome.to_json()))
    again = StreamOutcome.from_json(data)
    assert again.to_json() == outcome.to_json()
    assert [r.tid for r in again.ordered_results()] == [1, 2, 3, 5, 6, 7, 8, 9, 10, 12]


def test_raw_results_use_the_original_six_keys_in_command_order() -> None:
    raw = _outcome().raw_results()
    assert list(raw) == sorted(raw)
    assert set(raw[10]) == {"tid", "rc", "out", "err", "hsh", "cmd"}


def test_reprs_stay_short_whatever_the_output() -> None:
    """asyncio.run() formats its main task's result when it ends (Python 3.11): a repr
    as long as the output made a 64 MiB result cost a second and 64 MiB more."""
    big = "x" * (8 << 20)
    result = CommandResult(tid=1, rc=0, out=big, err="", hsh="h", cmd="cat big")
    outcome = StreamOutcome(commands=[], results={1: result}, target="db1:50051")
    assert len(repr(result)) < 300
    assert "8388608 chars" in repr(result)
    assert "cat big" in repr(result)
    assert len(repr(outcome)) < 300
    assert "1 of 0 result(s)" in repr(outcome)
