"""Retries: only while nothing was written, so no command ever runs twice.

Executions are counted on the server side: the real server's commands append a
word to a file; the misbehaving server records every command it read.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from engine_helpers import free_port, lines, shell_append

from remsvc_core.engine import NO_RETRY, RetryPolicy, run_commands
from remsvc_core.server.embedded import EmbeddedServer
from remsvc_core.settings import ChannelSettings

pytestmark = pytest.mark.timeout(120)

FAST = RetryPolicy(attempts=10, initial_backoff_s=0.2, max_backoff_s=1.0)


class RetryLogWatcher(logging.Handler):
    """Signals when the engine logs that it will retry (its only outward trace)."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.retried = threading.Event()

    def emit(self, record: logging.LogRecord) -> None:
        if "nothing sent; retry" in record.getMessage():
            self.retried.set()


@pytest.fixture
def retry_watcher() -> Iterator[RetryLogWatcher]:
    watcher = RetryLogWatcher()
    engine_log = logging.getLogger("remsvc_core.engine")
    old_level = engine_log.level
    engine_log.setLevel(logging.INFO)
    engine_log.addHandler(watcher)
    try:
        yield watcher
    finally:
        engine_log.removeHandler(watcher)
        engine_log.setLevel(old_level)


async def test_server_not_up_yet_is_retried_and_runs_each_command_once(
    tmp_path: Path, retry_watcher: RetryLogWatcher
):
    port = free_port()
    ran = tmp_path / "ran.txt"
    commands = [shell_append(ran, f"c{i}") for i in range(3)]
    stream = asyncio.create_task(
        run_commands(commands, ChannelSettings(target=f"127.0.0.1:{port}"), retry=FAST)
    )
    # Start the server only once the engine has failed to reach it at least once.
    assert await asyncio.to_thread(retry_watcher.retried.wait, 30)
    server = EmbeddedServer(port=port)
    await asyncio.to_thread(server.start)
    try:
        outcome = await asyncio.wait_for(stream, timeout=60)
    finally:
        await asyncio.to_thread(server.stop)

    assert outcome.complete, outcome.describe_failure()
    assert outcome.attempts >= 2
    assert lines(ran) == ["c0", "c1", "c2"]


async def test_server_down_then_restarted_on_the_same_port(tmp_path: Path):
    """The cached channel survives a server restart; a stream while it is down runs nothing."""
    port = free_port()
    ran = tmp_path / "ran.txt"
    settings = ChannelSettings(target=f"127.0.0.1:{port}")
    quick = RetryPolicy(attempts=3, initial_backoff_s=0.05, max_backoff_s=0.1)

    with EmbeddedServer(port=port):
        first = await run_commands([shell_append(ran, "first")], settings, retry=quick)
    while_down = await run_commands([shell_append(ran, "down")], settings, retry=quick)
    with EmbeddedServer(port=port):
        after = await run_commands([shell_append(ran, "after")], settings, retry=FAST)

    assert first.complete
    assert while_down.status_code == "UNAVAILABLE"
    assert while_down.attempts == 3
    assert while_down.missing_tids == [1]
    assert after.complete, after.describe_failure()
    assert lines(ran) == ["first", "after"]


@pytest.mark.parametrize("code", [grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.RESOURCE_EXHAUSTED])
async def test_no_retry_once_a_command_was_written(misbehaving, code):
    server = misbehaving(fail_after_reading=1, fail_code=code, fail_details="went away")

    outcome = await run_commands(["echo a", "echo b"], server.settings(), retry=FAST)

    assert (outcome.status_code, outcome.status_details) == (code.name, "went away")
    assert outcome.attempts == 1
    assert server.calls == 1
    assert server.tids_read() == [1]
    assert outcome.missing_tids == [1, 2]


async def test_refusal_before_reading_never_duplicates_a_command(misbehaving):
    """A server that refuses streams before reading: the engine retries only when it
    had not started writing. Repeated, so both branches of that race are exercised."""
    server = misbehaving(reject_first_calls=10**6)
    policy = RetryPolicy(attempts=3, initial_backoff_s=0.0)
    total_attempts = 0
    for _ in range(20):
        outcome = await run_commands(["echo a"], server.settings(), retry=policy)
        assert outcome.status_code == "UNAVAILABLE"
        assert outcome.results == {}
        total_attempts += outcome.attempts
    assert server.calls == total_attempts
    assert server.received == []


async def test_other_refusals_are_not_retried(misbehaving):
    server = misbehaving(reject_first_calls=1, reject_code=grpc.StatusCode.PERMISSION_DENIED)

    outcome = await run_commands(["echo a"], server.settings(), retry=FAST)

    assert outcome.status_code == "PERMISSION_DENIED"
    assert outcome.attempts == 1
    assert server.calls == 1


async def test_retries_stop_at_the_stream_timeout():
    settings = ChannelSettings(target=f"127.0.0.1:{free_port()}")
    policy = RetryPolicy(attempts=1000, initial_backoff_s=0.1, max_backoff_s=0.1)

    outcome = await asyncio.wait_for(
        run_commands(["echo"], settings, stream_timeout=1.0, retry=policy), timeout=30
    )

    assert outcome.status_code in {"UNAVAILABLE", "DEADLINE_EXCEEDED"}
    assert 2 <= outcome.attempts < 1000
    assert outcome.missing_tids == [1]


async def test_unreachable_without_retry_is_one_attempt():
    settings = ChannelSettings(target=f"127.0.0.1:{free_port()}")
    outcome = await run_commands(["echo"], settings, retry=NO_RETRY)
    assert (outcome.status_code, outcome.attempts) == ("UNAVAILABLE", 1)


async def test_wrong_token_is_not_retried(remsvc_server_factory):
    server = remsvc_server_factory(auth={"ci": "right-token"}, allow_insecure_auth=True)
    settings = server.settings(bearer_token="wrong-token")

    outcome = await run_commands(["echo"], settings, retry=FAST)

    assert outcome.status_code == "UNAUTHENTICATED"
    assert outcome.attempts == 1
    assert server.commands_run == 0
    assert "wrong-token" not in repr(outcome.to_json())
