"""A running command's stages, through a real CommandRunner on the test's event loop."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest
from support.server_process import process_gone, wait_for_pid_file, wait_until_gone

from remsvc_core.server.command import RunningCommand, Stage
from remsvc_core.server.outcome import TIMED_OUT, ExecResult, Outcome
from remsvc_core.server.runner import CommandRunner

pytestmark = pytest.mark.skipif(not os.path.isdir("/proc"), reason="checks processes through /proc")

# Generous bounds: the loop may be slow on a busy machine; nothing here is timed.
WAIT_S = 30.0


class Escapee:
    """A ``sleep 60`` a command starts outside its process group; killed at teardown."""

    def __init__(self, scratch: Path) -> None:
        self.pid_file = scratch / "escapee"

    def start(self, prefix: str = "") -> str:
        """The shell fragment that starts it in the background (``prefix`` runs it)."""
        return f"{prefix} setsid sh -c 'echo $$ > {self.pid_file}; exec sleep 60' &"

    def pid(self) -> int:
        return wait_for_pid_file(self.pid_file)


@pytest.fixture
def escapee(tmp_path: Path) -> Iterator[Escapee]:
    started = Escapee(tmp_path)
    yield started
    if started.pid_file.exists():
        with contextlib.suppress(ProcessLookupError):
            os.kill(started.pid(), signal.SIGKILL)


def runner(**limits: float) -> CommandRunner:
    return CommandRunner(
        output_cap=int(limits.pop("output_cap", 1 << 20)),
        timeout_s=limits.pop("timeout_s", WAIT_S),
        **limits,
    )


async def run_watching_stages(
    command_runner: CommandRunner, cmd: str
) -> tuple[Outcome, list[Stage]]:
    """Run ``cmd``, noting each stage it is seen in (polled from the same loop)."""
    finished: asyncio.Future[Outcome] = asyncio.get_running_loop().create_future()
    command = command_runner.start(cmd, on_done=finished.set_result)
    assert isinstance(command, RunningCommand)
    seen = [command.stage]

    async def watch() -> None:
        while not finished.done():
            if command.stage is not seen[-1]:
                seen.append(command.stage)
            await asyncio.sleep(0.01)

    await asyncio.wait_for(watch(), WAIT_S)
    if command.stage is not seen[-1]:
        seen.append(command.stage)
    return finished.result(), seen


async def test_a_quick_command_goes_from_running_to_done():
    outcome, seen = await run_watching_stages(runner(), "echo hi; echo oops >&2; exit 3")
    assert isinstance(outcome, ExecResult)
    assert (outcome.rc, outcome.out, outcome.err, outcome.timed_out) == (3, "hi\n", "oops\n", False)
    assert seen == [Stage.RUNNING, Stage.DONE]


async def test_killed_by_a_signal_reads_as_128_plus_the_signal():
    result = await runner().run("kill -9 $$")
    assert result.rc == 137


async def test_leftovers_get_a_linger_then_the_group_is_killed(tmp_path: Path):
    leftover = tmp_path / "leftover"
    cmd = f"sleep 60 & echo $! > {leftover}; echo done"
    outcome, seen = await run_watching_stages(runner(linger_s=1.0), cmd)
    assert isinstance(outcome, ExecResult)
    assert (outcome.rc, outcome.out) == (0, "done\n")
    assert seen[:2] == [Stage.RUNNING, Stage.EXITED]
    assert seen[-1] is Stage.DONE
    assert wait_until_gone(wait_for_pid_file(leftover))


async def test_an_escapee_holding_the_pipes_gets_one_more_linger_and_is_left_alone(escapee):
    cmd = f"{escapee.start()} echo started"
    outcome, seen = await run_watching_stages(runner(linger_s=1.0), cmd)
    assert isinstance(outcome, ExecResult)
    assert (outcome.rc, outcome.out) == (0, "started\n")
    assert seen == [Stage.RUNNING, Stage.EXITED, Stage.LEFTOVERS_KILLED, Stage.DONE]
    assert not process_gone(escapee.pid())  # a service started on purpose stays


async def test_at_the_deadline_everything_is_killed_and_output_discarded(tmp_path: Path):
    child = tmp_path / "child"
    cmd = f"echo partial; sleep 60 & echo $! > {child}; wait"
    outcome, seen = await run_watching_stages(runner(timeout_s=0.5), cmd)
    assert outcome == ExecResult(rc=1, out="", err=TIMED_OUT, pid=outcome.pid, timed_out=True)
    assert seen[0] is Stage.RUNNING
    assert seen[-1] is Stage.DONE
    assert set(seen) <= {Stage.RUNNING, Stage.TIMED_OUT, Stage.TIMED_OUT_EXITED, Stage.DONE}
    assert wait_until_gone(wait_for_pid_file(child))


async def test_a_timed_out_command_whose_pipe_outlives_it_still_reports_the_timeout(escapee):
    # A process that clears its environment escapes the tag sweep (documented); it
    # holds the pipe, so the command waits one linger after its exit, then reports.
    cmd = f"{escapee.start(prefix='env -i')} wait"
    outcome, seen = await run_watching_stages(runner(timeout_s=0.5, linger_s=1.0), cmd)
    assert isinstance(outcome, ExecResult)
    assert (outcome.rc, outcome.err, outcome.timed_out) == (1, TIMED_OUT, True)
    assert Stage.TIMED_OUT_EXITED in seen
    assert seen[-1] is Stage.DONE


async def test_cancel_kills_without_reporting(tmp_path: Path):
    started = tmp_path / "started"
    command_runner = runner()
    reported: list[Outcome] = []
    command = command_runner.start(f"echo $$ > {started}; exec sleep 60", on_done=reported.append)
    assert command is not None
    pid = wait_for_pid_file(started)
    command.cancel()
    command.cancel()  # twice is fine
    assert command.stage is Stage.DONE
    assert await command_runner.wait_idle(WAIT_S)
    assert wait_until_gone(pid)
    await asyncio.sleep(0.05)
    assert reported == []


async def test_a_command_that_cannot_start_is_answered_soon_not_from_inside_start():
    command_runner = runner()
    reported: list[Outcome] = []
    arrived = asyncio.Event()

    def on_done(outcome: Outcome) -> None:
        reported.append(outcome)
        arrived.set()

    assert command_runner.start("true", cmdtyp=9, on_done=on_done) is None
    assert reported == []  # not from inside start()
    await asyncio.wait_for(arrived.wait(), WAIT_S)
    (result,) = reported
    assert isinstance(result, ExecResult)
    assert (result.rc, result.pid) == (1, None)
    assert "unsupported cmdtyp 9" in result.err
