"""run_fleet against many simulated hosts on loopback (a few real server processes).

Everything is counted, never timed: concurrency on the servers' side, how many hosts
ran (side effects on disk), what each host returned.
"""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path
from typing import Any

import pytest
from fleet_helpers import ran_lines

from remsvc_core import channels
from remsvc_core.engine import RetryPolicy
from remsvc_core.fleet import (
    FAILED,
    NOT_STARTED,
    SUCCESS,
    FleetOutcome,
    HostRun,
    judge_fleet,
    run_fleet,
    run_fleet_sync,
)
from remsvc_core.hashing import command_hash
from remsvc_core.settings import ChannelSettings
from remsvc_core.watch import StreamWatch

PROBE = Path(__file__).with_name("concurrency_probe.py")
NO_RETRY = RetryPolicy(attempts=1)

pytestmark = pytest.mark.slow


def settings(targets: list[str]) -> list[ChannelSettings]:
    return [ChannelSettings(target=target) for target in targets]


@pytest.mark.parametrize(("hosts", "limit"), [(24, 5), (6, 1), (3, 8)])
def test_no_more_hosts_run_at_once_than_the_limit(
    fleet_group: Any, tmp_path: Path, hosts: int, limit: int
) -> None:
    group = fleet_group(hosts)
    state = tmp_path / "probe.json"
    probe = f"{sys.executable} {PROBE} {state} {limit} {hosts}"

    fleet = run_fleet_sync([probe, "echo second"], settings(group.targets), max_concurrency=limit)

    measured = json.loads(state.read_text())
    assert measured["peak"] == min(limit, hosts)  # never more, and the limit was used
    assert measured["started"] == hosts  # every host ran it, once
    assert measured["running"] == 0
    assert [run.state for run in fleet.hosts] == [SUCCESS] * hosts
    for run in fleet.hosts:  # nothing lost: every result of every host
        assert run.outcome is not None
        assert [(r.tid, r.out) for r in run.outcome.ordered_results()] == [
            (1, "probe done\n"),
            (2, "second\n"),
        ]
    assert fleet.max_concurrency == limit


def test_the_error_budget_stops_new_hosts_at_the_right_count(
    fleet_group: Any, tmp_path: Path
) -> None:
    good, failing = fleet_group(6), fleet_group(6, role="failing")
    record = tmp_path / "ran"
    command = f'echo "$FLEET_ROLE" >> {record}; test "$FLEET_ROLE" != failing'
    # One at a time, so the order is fixed: g f g f g f g f ...
    order = [t for pair in zip(good.targets, failing.targets, strict=True) for t in pair]

    fleet = run_fleet_sync([command], settings(order), max_concurrency=1, max_errors=3)

    states = [run.state for run in fleet.hosts]
    assert states == [SUCCESS, FAILED] * 3 + [NOT_STARTED] * 6
    assert ran_lines(record) == ["good", "failing"] * 3  # nothing ran past the budget
    judged = judge_fleet(fleet)
    assert not judged.ok
    assert judged.not_started == tuple(order[6:])
    assert "error budget (max_errors=3) ran out" in "; ".join(judged.problems())
    # Hosts not started are not failures of their own.
    assert judged.failed_hosts == [failing.targets[0], failing.targets[1], failing.targets[2]]


def test_with_hosts_at_once_the_running_ones_finish_and_no_new_one_starts(
    fleet_group: Any, tmp_path: Path
) -> None:
    failing = fleet_group(20, role="failing")
    record = tmp_path / "ran"
    limit, budget = 4, 5

    fleet = run_fleet_sync(
        [f"echo ran >> {record}; exit 7"],
        settings(failing.targets),
        max_concurrency=limit,
        max_errors=budget,
    )

    started = [run for run in fleet.hosts if run.started]
    # Hosts start only while fewer than `budget` failed; up to `limit - 1` more may
    # already be running when the budget runs out, and they finish.
    assert budget <= len(started) <= budget + limit - 1
    assert all(run.state == FAILED for run in started)
    assert len(ran_lines(record)) == len(started)
    assert fleet.in_state(NOT_STARTED) == fleet.hosts[len(started) :]  # in target order
    assert fleet.max_errors == budget


def test_a_percentage_budget_and_threshold_are_of_the_hosts(
    fleet_group: Any, tmp_path: Path
) -> None:
    good, failing = fleet_group(6), fleet_group(2, role="failing")
    command = 'test "$FLEET_ROLE" != failing'
    targets = settings(good.targets + failing.targets)

    fleet = run_fleet_sync(
        [command], targets, max_errors="25%", success_threshold="75%", max_concurrency=3
    )

    assert (fleet.max_errors, fleet.required) == (2, 6)
    judged = judge_fleet(fleet)
    assert judged.ok, judged.problems()  # 6 of 8 succeeded, 6 needed; nothing left out
    assert len(judged.failed) == 2
    strict = judge_fleet(run_fleet_sync([command], targets, success_threshold=7, max_concurrency=3))
    assert not strict.ok
    assert "6 of 8 host(s) succeeded, 7 needed (the success threshold)" in strict.problems()


def test_slow_and_unreachable_hosts_hold_up_no_one(
    fleet_group: Any, closed_targets: Any, tmp_path: Path
) -> None:
    """The slow host goes first and holds one of two slots; it waits until every other
    host is done, so it can only finish well if they never waited for it."""
    slow_group, fast_group = fleet_group(1, role="slow"), fleet_group(8)
    gate = tmp_path / "gate"
    command = (
        'if [ "$FLEET_ROLE" = slow ]; then '
        f"for i in $(seq 200); do [ -e {gate} ] && break; sleep 0.1; done; "
        f"[ -e {gate} ] && echo slow-done; else echo fast; fi"
    )
    unreachable = closed_targets(3)
    order = [*slow_group.targets, *unreachable[:1], *fast_group.targets, *unreachable[1:]]
    others = len(order) - 1

    def host_done(run: HostRun) -> None:
        finished.append(run.host)
        if len(finished) == others:
            gate.touch()  # everyone but the slow host is done

    finished: list[str] = []
    fleet = run_fleet_sync(
        [command], settings(order), max_concurrency=2, retry=NO_RETRY, on_host_done=host_done
    )

    assert finished[-1] == slow_group.targets[0]
    slow = fleet.host(slow_group.targets[0])
    assert slow.state == SUCCESS
    assert slow.outcome is not None
    assert slow.outcome.results[1].out == "slow-done\n"
    for target in unreachable:
        run = fleet.host(target)
        assert run.state == FAILED
        assert run.outcome is not None
        assert run.outcome.status_code == "UNAVAILABLE"
    assert [fleet.host(t).state for t in fast_group.targets] == [SUCCESS] * 8
    judged = judge_fleet(fleet)
    assert set(judged.failed_hosts) == set(unreachable)
    assert not judged.connection_failed  # some hosts were reached


def test_the_outcome_survives_json(fleet_group: Any, closed_targets: Any) -> None:
    group = fleet_group(3)
    targets = {f"web{i}": target for i, target in enumerate(group.targets, start=1)}
    named = {label: ChannelSettings(target=t) for label, t in targets.items()}
    named["web4"] = ChannelSettings(target=closed_targets(1)[0])

    fleet = run_fleet_sync(["echo a", "echo b >&2"], named, retry=NO_RETRY, max_errors=1,
                           max_concurrency=3)  # fmt: skip

    again = FleetOutcome.from_json(json.loads(json.dumps(fleet.to_json())))
    assert again.to_json() == fleet.to_json()
    assert [run.host for run in again.hosts] == ["web1", "web2", "web3", "web4"]
    assert again.raw_results()[:2] == [
        {"host": "web1", "tid": 1, "rc": 0, "out": "a\n", "err": "",
         "hsh": command_hash("echo a"), "cmd": "echo a"},
        {"host": "web1", "tid": 2, "rc": 0, "out": "", "err": "b\n",
         "hsh": command_hash("echo b >&2"), "cmd": "echo b >&2"},
    ]  # fmt: skip
    assert len(again.raw_results()) == 6


def test_each_host_gets_its_own_durable_batch_and_a_second_run_re_attaches(
    fleet_group: Any, tmp_path: Path
) -> None:
    config = f"[log]\nlevel = warning\n[batches]\nstate_dir = {tmp_path / 'batches'}\n"
    group = fleet_group(3, config_text=config)
    record = tmp_path / "ran"
    # Two labels on one server: their batches must still be two.
    targets = [("a", group.targets[0]), ("b", group.targets[0]), ("c", group.targets[1])]
    named = [(label, ChannelSettings(target=target)) for label, target in targets]
    command = f"echo once >> {record}; echo done"

    first = run_fleet_sync([command], named, batch_key="fleet-test:1")
    second = run_fleet_sync([command], named, batch_key="fleet-test:1")

    assert len(ran_lines(record)) == 3  # once per host label, never again
    for run in first.hosts:
        assert run.outcome is not None
        assert run.outcome.extensions
        assert "batch/1" in run.outcome.extensions
    for run in second.hosts:
        assert run.state == SUCCESS
        assert run.outcome is not None
        assert run.outcome.results[1].replayed


def test_live_output_and_progress_lines_carry_the_host(fleet_group: Any) -> None:
    group = fleet_group(3)
    labels = {f"db{i}": ChannelSettings(target=t) for i, t in enumerate(group.targets, 1)}
    lines: list[str] = []

    fleet = run_fleet_sync(
        ["echo one; echo two >&2"],
        labels,
        follow=True,
        host_hooks=lambda host: [StreamWatch(lines.append, host=host)],
    )

    assert [run.state for run in fleet.hosts] == [SUCCESS] * 3
    for label in labels:
        own = [line for line in lines if line.startswith(f"{label} ")]
        assert f"{label} [tid 1] one" in own
        assert f"{label} [tid 1] (stderr) two" in own
        assert any(line.startswith(f"{label} tid 1 rc=0") for line in own)
    assert all(line.split(" ", 1)[0] in labels for line in lines)


async def test_channels_are_closed_as_hosts_end_and_never_exceed_the_limit(
    fleet_group: Any,
) -> None:
    group = fleet_group(12)
    targets = settings(group.targets)
    # A channel opened by someone else before the fan-out (another task in the same
    # triggerer, say) is left alone.
    mine = targets[0]
    kept = await channels.get_channel(mine)
    open_counts: list[int] = []
    loop_channels = channels._channels_of(asyncio.get_running_loop()).channels

    def host_done(run: HostRun) -> None:
        open_counts.append(len(loop_channels))

    # Two labels on one server share its channel while both run.
    labelled = [(f"h{i}", s) for i, s in enumerate(targets)]
    labelled.insert(2, ("h1-again", targets[1]))
    try:
        fleet = await run_fleet(["echo hi"], labelled, max_concurrency=3, on_host_done=host_done)
        assert [run.state for run in fleet.hosts] == [SUCCESS] * 13
        # While it ran: at most the hosts at once, plus the one that was there before.
        assert max(open_counts) <= 3 + 1
        assert channels.cached_channel(mine) is kept
        assert [channels.cached_channel(s) for s in targets[1:]] == [None] * 11
    finally:
        await channels.close_channels()
