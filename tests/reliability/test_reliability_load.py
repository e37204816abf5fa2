"""Load: 200 concurrent streams x 50 commands against one server process.

Every result must arrive, in order, with the right output; afterwards the server
process (read from /proc) must hold no child, no zombie and no file descriptor
beyond its baseline, and its memory must come back near where it started.
"""

from __future__ import annotations

import asyncio

import pytest
from procfs_probe import ProcessSnapshot, snapshot, wait_for

from remsvc_core import channels
from remsvc_core.engine import run_commands
from remsvc_core.probes import get_status
from remsvc_core.settings import ChannelSettings

pytestmark = [pytest.mark.reliability, pytest.mark.slow, pytest.mark.timeout(240)]

STREAMS = 200
COMMANDS = 50
SETTLE_S = 20.0
# Memory "near the baseline": CPython keeps some arenas and gRPC some buffers after a
# burst, so the bound is the baseline plus a fixed allowance, not the baseline itself.
MEMORY_ALLOWANCE = 16 * 1024 * 1024


def commands_for(stream: int) -> list[str]:
    return [f"echo s{stream}c{n}" for n in range(COMMANDS)]


async def run_streams(settings: ChannelSettings, count: int) -> list:
    return await asyncio.gather(
        *(run_commands(commands_for(s), settings, stream_timeout=200) for s in range(count))
    )


async def settled(pid: int, baseline: ProcessSnapshot) -> ProcessSnapshot:
    """The server's state once descriptors and children are back (bounded wait)."""

    def back() -> bool:
        now = snapshot(pid)
        return now.fds <= baseline.fds and not now.children

    await asyncio.to_thread(wait_for, back, SETTLE_S, 0.1)
    return snapshot(pid)


async def test_two_hundred_streams_of_fifty_commands(server_process, figures):
    server = server_process(cmd_timeout_ms=60_000)
    settings = ChannelSettings(target=server.target)

    # Warm up (thread pools, channel, allocator), then take the baseline with no
    # client connected.
    warm = await run_streams(settings, 20)
    assert all(outcome.complete for outcome in warm)
    await channels.close_channels()
    await asyncio.sleep(1.0)
    baseline = snapshot(server.pid)
    assert not baseline.children

    peak = baseline.rss_bytes
    done = asyncio.Event()

    async def sample() -> None:
        nonlocal peak
        while not done.is_set():
            peak = max(peak, snapshot(server.pid).rss_bytes)
            await asyncio.sleep(0.25)

    sampler = asyncio.create_task(sample())
    try:
        outcomes = await run_streams(settings, STREAMS)
    finally:
        done.set()
        await sampler
    results = sum(len(outcome.results) for outcome in outcomes)
    figures.load_streams += STREAMS
    figures.load_commands += STREAMS * COMMANDS
    figures.load_results += results
    figures.lost(STREAMS * COMMANDS, STREAMS * COMMANDS - results)

    incomplete = [o.describe_failure() for o in outcomes if not o.complete]
    assert not incomplete, incomplete[:3]
    for stream, outcome in enumerate(outcomes):
        assert [r.out for r in outcome.ordered_results()] == [
            f"s{stream}c{n}\n" for n in range(COMMANDS)
        ]
        assert outcome.attempts == 1

    # The server's own counter: every command ran exactly once (warm-up included).
    status = await get_status(settings, timeout=30)
    ran = int(status.fields["commands"])
    figures.executions(ran, max(0, ran - (20 + STREAMS) * COMMANDS))
    assert ran == (20 + STREAMS) * COMMANDS, status.msg

    await channels.close_channels()
    after = await settled(server.pid, baseline)
    figures.leftovers(len(after.children))
    memory_back = await asyncio.to_thread(
        wait_for,
        lambda: snapshot(server.pid).rss_bytes <= baseline.rss_bytes + MEMORY_ALLOWANCE,
        SETTLE_S,
        0.25,
    )
    final = snapshot(server.pid)
    figures.note(
        f"load server: fds {baseline.fds} -> {after.fds}, children {len(after.children)}, "
        f"RSS {baseline.rss_bytes >> 20} MiB -> peak {peak >> 20} MiB -> "
        f"{final.rss_bytes >> 20} MiB"
    )
    assert not after.children, f"children left: {after.children}"
    assert not after.zombies
    assert after.fds <= baseline.fds, f"descriptors: {baseline.fds} before, {after.fds} after"
    assert memory_back, (
        f"memory {final.rss_bytes >> 20} MiB did not return near the baseline "
        f"{baseline.rss_bytes >> 20} MiB (peak {peak >> 20} MiB)"
    )
