"""``[limits]`` enforced by a real server process: streams per identity, commands at
once (server-wide and per identity), the idle-stream timeout. A call past a limit is
refused at its start with RESOURCE_EXHAUSTED naming the limit, before anything ran."""

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


def test_commands_at_once_are_limited_server_wide(
    server_process: Callable[..., Any], tmp_path: Path
) -> None:
    server = server_process(
        f"[auth]\nci = {TOKENS['ci']}\nops = {TOKENS['ops']}\n[limits]\nmax_commands = 2\n"
    )
    gate = tmp_path / "gate"

    async def scenario() -> tuple[Any, list[Any]]:
        held = await _hold(_as(server, "ci"), gate, 2)
        refused = await run_commands(["echo no"], _as(server, "ops"), retry=NO_RETRY)
        gate.touch()
        return refused, await asyncio.gather(*held)

    refused, done = asyncio.run(scenario())
    assert refused.status_code == "RESOURCE_EXHAUSTED"
    assert "[limits] max_commands" in refused.status_details
    assert all(outcome.complete for outcome in done)


def test_an_identity_section_lowers_its_own_limit(
    server_process: Callable[..., Any], tmp_path: Path
) -> None:
    server = server_process(
        f"[auth]\nci = {TOKENS['ci']}\nops = {TOKENS['ops']}\n[identity ci]\nmax_commands = 1\n"
    )
    gate = tmp_path / "gate"

    async def scenario() -> tuple[Any, Any, list[Any]]:
        held = await _hold(_as(server, "ci"), gate, 1)
        refused = await run_commands(["echo no"], _as(server, "ci"), retry=NO_RETRY)
        other = await run_commands(["echo yes"], _as(server, "ops"))
        gate.touch()
        return refused, other, await asyncio.gather(*held)

    refused, other, done = asyncio.run(scenario())
    assert refused.status_code == "RESOURCE_EXHAUSTED"
    assert "identity 'ci'" in refused.status_details
    assert other.complete, other.describe_failure()
    assert done[0].complete


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
