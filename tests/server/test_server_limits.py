"""``[limits]`` enforced by a real server process: streams per identity (past it, a
call is refused at its start with RESOURCE_EXHAUSTED naming the limit, before anything
ran), commands at once server-wide and per identity (past them, a command waits its
turn, first come first served), and the idle-stream timeout."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from remsvc_core.engine import NO_RETRY, run_commands
from remsvc_core.settings import ChannelSettings

pytestmark = pytest.mark.timeout(120)

TOKENS = {"ci": "token-ci-0123456789abcdef", "ops": "token-ops-0123456789abcdef"}


def _as(server: Any, identity: str) -> ChannelSettings:
    return ChannelSettings(target=server.target, bearer_token=TOKENS[identity])


async def _hold(settings: ChannelSettings, gate: Path, n: int) -> list[asyncio.Task[Any]]:
    """``n`` streams, each running one command that waits for ``gate``."""
    wait = f"i=0; while [ ! -e {gate} ] && [ $i -lt 600 ]; do sleep 0.1; i=$((i+1)); done"
    tasks = [
        asyncio.create_task(run_commands([wait], settings, stream_timeout=90)) for _ in range(n)
    ]
    await asyncio.sleep(1.0)  # bounded: long enough for the streams to open
    return tasks


def test_streams_per_identity_are_limited_and_freed(
    server_process: Callable[..., Any], tmp_path: Path
) -> None:
    server = server_process(
        f"[auth]\nci = {TOKENS['ci']}\nops = {TOKENS['ops']}\n[limits]\nidentity_max_streams = 2\n"
    )
    gate = tmp_path / "gate"

    async def scenario() -> tuple[Any, Any, list[Any], Any]:
        held = await _hold(_as(server, "ci"), gate, 2)
        refused = await run_commands(["echo no"], _as(server, "ci"), retry=NO_RETRY)
        other = await run_commands(["echo yes"], _as(server, "ops"))  # another identity
        gate.touch()
        done = await asyncio.gather(*held)
        after = await run_commands(["echo again"], _as(server, "ci"))
        return refused, other, done, after

    refused, other, done, after = asyncio.run(scenario())
    assert refused.status_code == "RESOURCE_EXHAUSTED"
    assert "max_streams = 2" in refused.status_details
    assert refused.results == {}
    assert other.complete, other.describe_failure()
    assert all(outcome.complete for outcome in done)
    assert after.complete, after.describe_failure()


def test_a_command_past_the_server_wide_limit_waits_its_turn(
    server_process: Callable[..., Any], tmp_path: Path
) -> None:
    server = server_process(
        f"[auth]\nci = {TOKENS['ci']}\nops = {TOKENS['ops']}\n[limits]\nmax_commands = 2\n"
    )
    gate, marker = tmp_path / "gate", tmp_path / "ran"

    async def scenario() -> tuple[bool, Any, list[Any]]:
        held = await _hold(_as(server, "ci"), gate, 2)
        waiting = asyncio.create_task(
            run_commands([f"touch {marker}; echo yes"], _as(server, "ops"), retry=NO_RETRY)
        )
        await asyncio.sleep(1.5)  # bounded: it would have run by now, were a slot free
        ran_early = marker.exists()
        gate.touch()
        return ran_early, await waiting, await asyncio.gather(*held)

    ran_early, waited, done = asyncio.run(scenario())
    assert not ran_early, "a third command started while max_commands = 2 were running"
    assert waited.complete, waited.describe_failure()
    assert waited.results[1].out == "yes\n"
    assert all(outcome.complete for outcome in done)


def test_an_identity_at_its_own_limit_waits_and_lets_others_through(
    server_process: Callable[..., Any], tmp_path: Path
) -> None:
    server = server_process(
        f"[auth]\nci = {TOKENS['ci']}\nops = {TOKENS['ops']}\n[identity ci]\nmax_commands = 1\n"
    )
    gate, marker = tmp_path / "gate", tmp_path / "ran"

    async def scenario() -> tuple[Any, bool, Any, list[Any]]:
        held = await _hold(_as(server, "ci"), gate, 1)
        waiting = asyncio.create_task(
            run_commands([f"touch {marker}"], _as(server, "ci"), retry=NO_RETRY)
        )
        # Another identity is not held up by ci's queue.
        other = await asyncio.wait_for(run_commands(["echo yes"], _as(server, "ops")), 30)
        ran_early = marker.exists()
        gate.touch()
        return other, ran_early, await waiting, await asyncio.gather(*held)

    other, ran_early, waited, done = asyncio.run(scenario())
    assert other.complete, other.describe_failure()
    assert not ran_early, "ci's second command ran past its max_commands = 1"
    assert waited.complete, waited.describe_failure()
    assert done[0].complete


def test_many_streams_past_the_limit_all_finish_and_never_exceed_it(
    server_process: Callable[..., Any], tmp_path: Path
) -> None:
    # 24 streams of 3 commands from two identities through 2 command slots: every
    # command runs, none is refused, and no more than 2 ever run at once (each counts
    # the markers of the commands running with it).
    server = server_process(
        f"[auth]\nci = {TOKENS['ci']}\nops = {TOKENS['ops']}\n[limits]\nmax_commands = 2\n"
    )
    running = tmp_path / "running"
    running.mkdir()
    command = f"d=$(mktemp -d {running}/x.XXXXXX); ls {running} | wc -l; sleep 0.05; rmdir $d"

    async def scenario() -> list[Any]:
        streams = [
            run_commands([command] * 3, _as(server, ("ci", "ops")[n % 2]), stream_timeout=120)
            for n in range(24)
        ]
        return await asyncio.gather(*streams)

    outcomes = asyncio.run(scenario())
    assert all(outcome.complete for outcome in outcomes), [
        outcome.describe_failure() for outcome in outcomes if not outcome.complete
    ]
    seen = [int(r.out) for outcome in outcomes for r in outcome.results.values()]
    assert len(seen) == 72
    assert max(seen) <= 2, f"up to {max(seen)} commands ran at once with max_commands = 2"
    print(f"72 commands through 2 slots: at most {max(seen)} at once, none refused")


def test_a_caller_that_gives_up_while_its_command_runs_frees_the_slot(
    server_process: Callable[..., Any],
) -> None:
    # The command is killed with its stream (never reaching its end): the slot it held
    # must come back all the same, or one impatient caller would shrink the server.
    server = server_process(f"[auth]\nci = {TOKENS['ci']}\n[limits]\nmax_commands = 1\n")

    async def scenario() -> tuple[Any, Any]:
        gave_up = await run_commands(["sleep 60"], _as(server, "ci"), stream_timeout=1.5)
        after = await run_commands(["echo after"], _as(server, "ci"), stream_timeout=30)
        return gave_up, after

    gave_up, after = asyncio.run(scenario())
    assert gave_up.status_code == "DEADLINE_EXCEEDED"
    assert after.complete, after.describe_failure()
    assert after.results[1].out == "after\n"


def test_a_stream_waiting_for_a_slot_is_not_idle(
    server_process: Callable[..., Any], tmp_path: Path
) -> None:
    server = server_process(
        f"[auth]\nci = {TOKENS['ci']}\n[limits]\nmax_commands = 1\nidle_stream_timeout_s = 1\n"
    )
    gate = tmp_path / "gate"

    async def scenario() -> tuple[Any, list[Any]]:
        held = await _hold(_as(server, "ci"), gate, 1)
        waiting = asyncio.create_task(run_commands(["echo waited"], _as(server, "ci")))
        await asyncio.sleep(3)  # bounded: three idle timeouts long
        gate.touch()
        return await waiting, await asyncio.gather(*held)

    waited, done = asyncio.run(scenario())
    assert waited.complete, waited.describe_failure()
    assert done[0].complete


def test_a_caller_that_gives_up_while_waiting_takes_no_slot(
    server_process: Callable[..., Any], tmp_path: Path
) -> None:
    import grpc

    from remsvc_core.wire import pb, pb_grpc

    server = server_process(f"[auth]\nci = {TOKENS['ci']}\n[limits]\nmax_commands = 1\n")
    gate = tmp_path / "gate"
    metadata = (("authorization", f"Bearer {TOKENS['ci']}"),)

    async def scenario() -> tuple[Any, Any, list[Any], Any]:
        held = await _hold(_as(server, "ci"), gate, 1)
        # A stream and a unary call queue behind it, and give up (their deadlines).
        gave_up = await run_commands(["echo never"], _as(server, "ci"), stream_timeout=1.5)
        async with grpc.aio.insecure_channel(server.target) as channel:
            with pytest.raises(grpc.aio.AioRpcError) as unary:
                await pb_grpc.RemSvcStub(channel).RemCmd(
                    pb.RemCmdMsg(cmd="echo never", tid=1), timeout=1.5, metadata=metadata
                )
        gate.touch()
        done = await asyncio.gather(*held)
        # Had either kept its slot, this would wait forever (bounded by its timeout).
        after = await run_commands(["echo after"], _as(server, "ci"), stream_timeout=30)
        return gave_up, unary.value, done, after

    gave_up, unary, done, after = asyncio.run(scenario())
    assert gave_up.status_code == "DEADLINE_EXCEEDED"
    assert gave_up.results == {}
    assert unary.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    assert done[0].complete
    assert after.complete, after.describe_failure()
    assert after.results[1].out == "after\n"


def test_an_idle_stream_is_closed_after_the_timeout(server_process: Callable[..., Any]) -> None:
    import grpc

    from remsvc_core.wire import pb, pb_grpc

    server = server_process("[limits]\nidle_stream_timeout_s = 1\n")

    def idle_requests() -> Any:
        yield pb.RemCmdMsg(cmd="echo first", tid=1)
        import time

        time.sleep(6)  # bounded: far past the idle timeout, then end
        yield pb.RemCmdMsg(cmd="echo late", tid=2)

    with grpc.insecure_channel(server.target) as channel:
        call = pb_grpc.RemSvcStub(channel).RemCmdStrm(idle_requests(), timeout=30)
        responses = []
        with pytest.raises(grpc.RpcError) as ended:
            responses.extend(call)
    assert [r.tid for r in responses] == [1]
    assert ended.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    assert "idle_stream_timeout_s" in (ended.value.details() or "")
