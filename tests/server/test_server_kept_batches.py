"""Kept batches (batch/1) against a real server process: a lost stream's batch goes on,
a re-attach replays what finished and runs the rest once, one stream at a time, an
explicit cancel kills, and a restarted server remembers.

Every command leaves a side effect (a line appended to a file), so "ran once" is
counted from the host, not taken from the server's word.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from support.server_process import kill_orphaned_commands

from remsvc_core.engine import run_commands, run_commands_sync
from remsvc_core.hookspecs import hookimpl
from remsvc_core.kept_batches import cancel_batch_sync, get_batch_sync
from remsvc_core.settings import ChannelSettings

pytestmark = pytest.mark.timeout(180)


def _mark(log: Path, word: str, then: str = "") -> str:
    """A command that appends ``word`` to ``log`` (its side effect), then runs ``then``."""
    return f"echo {word} >> '{log}'; {then} echo {word}"


def _lines(path: Path) -> list[str]:
    return path.read_text().split() if path.exists() else []


def _wait_for(predicate: Callable[[], bool], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout}s")
        time.sleep(0.05)


class FirstResult:
    """Signals the moment the first result arrives (so a test can lose the stream then)."""

    def __init__(self) -> None:
        self.arrived = asyncio.Event()

    @hookimpl
    def remsvc_result(self) -> None:
        self.arrived.set()


@pytest.fixture
def kept(server_process: Callable[..., Any], tmp_path: Path) -> Callable[..., Any]:
    """Start a server that keeps batches under one state dir for the whole test."""
    state = tmp_path / "state"

    def start(**overrides: Any) -> Any:
        return server_process(
            batch_state_dir=str(state), batch_grace_s=overrides.pop("grace", 60), **overrides
        )

    return start


async def _lose_stream_after_first_result(
    commands: list[str], settings: ChannelSettings, key: str
) -> None:
    first = FirstResult()
    task = asyncio.create_task(
        run_commands(commands, settings, batch_key=key, hooks=[first], stream_timeout=60)
    )
    await asyncio.wait_for(first.arrived.wait(), 30)
    task.cancel()  # the client goes away mid-batch (a triggerer killed, say)
    with pytest.raises(asyncio.CancelledError):
        await task


def test_a_lost_stream_goes_on_and_a_reattach_replays_without_running_again(
    kept: Callable[..., Any], tmp_path: Path
) -> None:
    server = kept()
    settings = ChannelSettings(target=server.target)
    log = tmp_path / "ran.log"
    # The first command takes a moment, so the server has read the whole batch when the
    # stream is lost (what it never received, it cannot run: the re-attach sends it).
    commands = [_mark(log, "one", "sleep 0.5;"), _mark(log, "two", "sleep 1;"), _mark(log, "three")]
    asyncio.run(_lose_stream_after_first_result(commands, settings, "test:lost"))
    # Nobody is attached, yet the batch finishes on the server.
    _wait_for(lambda: _lines(log) == ["one", "two", "three"])
    _wait_for(lambda: get_batch_sync(settings, "test:lost").state == "finished")

    again = run_commands_sync(commands, settings, batch_key="test:lost")
    assert again.complete, again.describe_failure()
    assert [r.out for r in again.ordered_results()] == ["one\n", "two\n", "three\n"]
    assert all(r.replayed for r in again.ordered_results())
    assert all(r.started_at and r.ended_at for r in again.ordered_results())
    assert _lines(log) == ["one", "two", "three"]  # nothing ran twice


def test_reattaching_while_a_command_runs_waits_for_it_and_runs_the_rest_once(
    kept: Callable[..., Any], tmp_path: Path
) -> None:
    server = kept()
    settings = ChannelSettings(target=server.target)
    log = tmp_path / "ran.log"
    commands = [_mark(log, "one"), _mark(log, "two", "sleep 2;"), _mark(log, "three")]
    asyncio.run(_lose_stream_after_first_result(commands, settings, "test:running"))
    again = run_commands_sync(commands, settings, batch_key="test:running")
    assert again.complete, again.describe_failure()
    assert again.results[1].replayed
    assert not again.results[3].replayed
    assert _lines(log) == ["one", "two", "three"]


def test_one_stream_at_a_time_a_racing_second_waits_its_turn(
    kept: Callable[..., Any], tmp_path: Path
) -> None:
    server = kept()
    settings = ChannelSettings(target=server.target)
    log = tmp_path / "ran.log"
    commands = [_mark(log, "one", "sleep 1.5;"), _mark(log, "two")]

    async def race() -> tuple[Any, Any]:
        first = asyncio.create_task(run_commands(commands, settings, batch_key="test:race"))
        await asyncio.sleep(0.5)  # the first holds the batch now
        second = asyncio.create_task(run_commands(commands, settings, batch_key="test:race"))
        return await first, await second

    first, second = asyncio.run(race())
    assert first.complete, first.describe_failure()
    assert second.complete, second.describe_failure()
    assert second.attempts > 1  # refused while the first held it, then attached
    assert all(r.replayed for r in second.ordered_results())
    assert _lines(log) == ["one", "two"]


def test_a_key_used_for_another_batch_is_refused_before_anything_runs(
    kept: Callable[..., Any], tmp_path: Path
) -> None:
    server = kept()
    settings = ChannelSettings(target=server.target)
    log = tmp_path / "ran.log"
    run_commands_sync([_mark(log, "first")], settings, batch_key="test:reused")
    other = run_commands_sync([_mark(log, "other")], settings, batch_key="test:reused")
    assert other.status_code == "FAILED_PRECONDITION"
    assert other.status_details.startswith("batch key reused")
    assert _lines(log) == ["first"]


def _pid_alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0]
    except FileNotFoundError:
        return False
    return state != "Z"


def test_cancel_by_key_kills_the_running_command_and_starts_nothing_more(
    kept: Callable[..., Any], tmp_path: Path
) -> None:
    server = kept()
    settings = ChannelSettings(target=server.target)
    log, pidfile = tmp_path / "ran.log", tmp_path / "pid"
    commands = [
        _mark(log, "one"),
        f"echo $$ > '{pidfile}'; exec sleep 60",
        _mark(log, "three"),
    ]
    asyncio.run(_lose_stream_after_first_result(commands, settings, "test:cancel"))
    _wait_for(lambda: pidfile.exists() and pidfile.read_text().strip() != "")
    pid = int(pidfile.read_text())
    assert _pid_alive(pid)
    cancelled_at = time.monotonic()
    state = cancel_batch_sync(settings, "test:cancel")
    _wait_for(lambda: not _pid_alive(pid), timeout=10)
    print(f"killed {time.monotonic() - cancelled_at:.3f}s after the cancel")
    assert state.state == "cancelled"
    assert time.monotonic() - cancelled_at < 2.0
    again = run_commands_sync(commands, settings, batch_key="test:cancel")
    assert again.status_code == "FAILED_PRECONDITION"
    assert "cancelled" in again.status_details
    assert again.results[2].rc == 137
    assert again.results[2].err == "killed: batch cancelled"
    assert _lines(log) == ["one"]  # "three" never ran


def test_after_the_grace_period_the_batch_is_abandoned_and_what_never_ran_runs_later(
    kept: Callable[..., Any], tmp_path: Path
) -> None:
    server = kept(grace=1)
    settings = ChannelSettings(target=server.target)
    log, pidfile = tmp_path / "ran.log", tmp_path / "pid"
    commands = [_mark(log, "one"), f"echo $$ > '{pidfile}'; exec sleep 60", _mark(log, "three")]
    asyncio.run(_lose_stream_after_first_result(commands, settings, "test:grace"))
    _wait_for(lambda: pidfile.exists() and pidfile.read_text().strip() != "")
    pid = int(pidfile.read_text())
    _wait_for(lambda: not _pid_alive(pid), timeout=15)
    assert get_batch_sync(settings, "test:grace").state == "abandoned"
    again = run_commands_sync(commands, settings, batch_key="test:grace")
    assert again.results[2].err == "killed: no client re-attached within 1s"
    assert again.results[3].out == "three\n"
    assert _lines(log) == ["one", "three"]


@pytest.mark.parametrize("how", ["SIGKILL", "SIGTERM"])
def test_a_restarted_server_remembers_what_finished_and_never_runs_it_again(
    kept: Callable[..., Any], tmp_path: Path, how: str
) -> None:
    first = kept(drain_grace_ms=0)
    log = tmp_path / "ran.log"
    commands = [_mark(log, "one"), _mark(log, "two", "sleep 30;"), _mark(log, "three")]
    asyncio.run(
        _lose_stream_after_first_result(
            commands, ChannelSettings(target=first.target), "test:restart"
        )
    )
    _wait_for(lambda: _lines(log) == ["one", "two"])  # the second is running now
    if how == "SIGKILL":
        first.kill()
    else:
        first.terminate()
    first.wait()
    second = kept()
    again = run_commands_sync(
        commands, ChannelSettings(target=second.target), batch_key="test:restart"
    )
    assert again.complete, again.describe_failure()
    assert again.results[1].replayed
    assert again.results[2].rc == 137
    if how == "SIGKILL":
        assert again.results[2].interrupted  # it may or may not have had its effect
        assert again.results[2].err.startswith("interrupted")
    else:
        assert again.results[2].err.startswith("killed: the server was stopped")
    assert again.results[3].out == "three\n"
    assert _lines(log) == ["one", "two", "three"]  # "two" never ran a second time
    for process in (first, second):
        assert "Traceback" not in process.log_text()
    if how == "SIGKILL":  # its "sleep 30" outlived the killed server, as documented
        assert kill_orphaned_commands(str(log)) >= 1


def test_identities_never_see_each_others_batches(kept: Callable[..., Any], tmp_path: Path) -> None:
    server = kept(auth={"alice": "token-alice-0123456789", "bob": "token-bob-0123456789"})
    alice = ChannelSettings(target=server.target, bearer_token="token-alice-0123456789")
    bob = ChannelSettings(target=server.target, bearer_token="token-bob-0123456789")
    log = tmp_path / "ran.log"
    run_commands_sync([_mark(log, "alice")], alice, batch_key="shared:key")
    assert get_batch_sync(bob, "shared:key").state == "unknown"
    assert cancel_batch_sync(bob, "shared:key").state == "unknown"
    theirs = run_commands_sync([_mark(log, "bob")], bob, batch_key="shared:key")
    assert theirs.complete, theirs.describe_failure()
    assert not theirs.results[1].replayed
    assert _lines(log) == ["alice", "bob"]


def test_the_journal_is_private_to_the_servers_user(
    kept: Callable[..., Any], tmp_path: Path
) -> None:
    server = kept()
    run_commands_sync(["echo x"], ChannelSettings(target=server.target), batch_key="test:private")
    state = tmp_path / "state"
    assert oct(os.stat(state).st_mode & 0o777) == "0o700"
    for path in state.rglob("*"):
        assert os.stat(path).st_mode & 0o077 == 0, path
