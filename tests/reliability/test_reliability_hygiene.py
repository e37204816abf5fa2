"""Process hygiene: timeouts, cancellations and shutdown leave no process behind.

Every test starts commands whose processes carry a unique marker in their command
line (``sleep 300.<marker>``), checks through /proc that they really started, makes
the server end them (timeout, cancelled stream, SIGTERM) and then checks that not one
process with the marker still runs: not the shell, not a background child, not a
grandchild that ``nohup``-ed, ``setsid``-ed or double-forked itself away.
"""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Iterator

import pytest
from procfs_probe import children_of, kill_marked, marked_pids, wait_for

from remsvc_core.engine import run_commands
from remsvc_core.settings import ChannelSettings

pytestmark = [pytest.mark.reliability, pytest.mark.timeout(120)]

START_BOUND_S = 10.0
GONE_BOUND_S = 10.0

# Each shape starts the marked processes listed, and the command itself keeps running
# (``sleep``) until the server's timeout fires. {m} is replaced by a marker.
SHAPES = {
    "background children": ("sleep 300.{m}1 & sh -c 'sleep 300.{m}2 & wait' & sleep 300.{m}3", 3),
    "nohup": ("nohup sleep 300.{m}1 >/dev/null 2>&1 & sleep 300.{m}2", 2),
    "setsid": ("setsid sleep 300.{m}1 </dev/null >/dev/null 2>&1 & sleep 300.{m}2", 2),
    "double fork": ("( (sleep 300.{m}1 </dev/null >/dev/null 2>&1 &) & ); sleep 300.{m}2", 2),
    "setsid double fork": (
        "sh -c 'setsid sh -c \"sleep 300.{m}1\" </dev/null >/dev/null 2>&1 &'; sleep 300.{m}2",
        2,
    ),
}


@pytest.fixture
def cleanup(marker: str) -> Iterator[str]:
    """Whatever a failing test leaves running is killed afterwards (and counted)."""
    yield marker
    kill_marked(marker)


async def started(marker: str, count: int) -> list[int]:
    """Wait (bounded) until ``count`` marked processes run; their pids."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + START_BOUND_S
    while loop.time() < deadline:
        pids = marked_pids(marker)
        if len(pids) >= count:
            return pids
        await asyncio.sleep(0.05)
    return marked_pids(marker)


def leftovers(marker: str, figures) -> list[int]:
    wait_for(lambda: not marked_pids(marker), GONE_BOUND_S)
    left = marked_pids(marker)
    figures.leftovers(len(left))
    return left


@pytest.mark.parametrize("shape", list(SHAPES))
async def test_timeout_leaves_nothing_behind(server_process, cleanup, figures, shape):
    marker = cleanup
    template, count = SHAPES[shape]
    server = server_process(cmd_timeout_ms=2_000)
    settings = ChannelSettings(target=server.target)

    stream = asyncio.create_task(
        run_commands([template.format(m=marker), "echo next"], settings, stream_timeout=60)
    )
    assert len(await started(marker, count)) >= count, "the marked processes never started"
    outcome = await stream
    figures.fault(f"command timeout ({shape})")

    assert outcome.complete, outcome.describe_failure()
    assert (outcome.results[1].rc, outcome.results[1].err) == (1, "process timed out")
    assert outcome.results[2].out == "next\n"
    assert leftovers(marker, figures) == [], f"{shape}: processes survived the timeout"
    assert not children_of(server.pid), "the server kept a child (or a zombie)"


@pytest.mark.parametrize("shape", ["background children", "setsid"])
async def test_cancelled_stream_leaves_nothing_behind(server_process, cleanup, figures, shape):
    marker = cleanup
    template, count = SHAPES[shape]
    server = server_process(cmd_timeout_ms=60_000)
    settings = ChannelSettings(target=server.target)

    stream = asyncio.create_task(
        run_commands([template.format(m=marker)], settings, stream_timeout=60)
    )
    assert len(await started(marker, count)) >= count
    stream.cancel()
    with pytest.raises(asyncio.CancelledError):
        await stream
    figures.fault(f"stream cancelled ({shape})")

    assert leftovers(marker, figures) == [], f"{shape}: processes survived the cancellation"
    assert wait_for(lambda: not children_of(server.pid), GONE_BOUND_S)


async def test_sigterm_drains_the_running_command_then_exits_clean(
    server_process, cleanup, figures
):
    marker = cleanup
    server = server_process(drain_grace_s=10)
    settings = ChannelSettings(target=server.target)
    command = f"sleep 1.{marker}1; echo drained"

    stream = asyncio.create_task(
        run_commands([command, "echo refused"], settings, stream_timeout=60)
    )
    assert await started(marker, 1)
    server.terminate()
    outcome = await stream
    figures.fault("server SIGTERM (drain)")

    assert outcome.results[1].out == "drained\n", "the running command was not drained"
    assert 2 not in outcome.results or outcome.results[2].out == "refused\n"
    assert server.wait(timeout=30) == 0
    assert leftovers(marker, figures) == []


async def test_sigterm_past_the_grace_kills_every_descendant(server_process, cleanup, figures):
    marker = cleanup
    template, count = SHAPES["setsid double fork"]
    server = server_process(drain_grace_s=1, cmd_timeout_ms=60_000)
    settings = ChannelSettings(target=server.target)

    stream = asyncio.create_task(
        run_commands([template.format(m=marker)], settings, stream_timeout=60)
    )
    assert len(await started(marker, count)) >= count
    server.popen.send_signal(signal.SIGTERM)
    outcome = await stream
    figures.fault("server SIGTERM past the grace")

    assert outcome.missing_tids == [1]
    assert server.wait(timeout=30) == 0
    assert leftovers(marker, figures) == [], "processes survived the server's shutdown"
