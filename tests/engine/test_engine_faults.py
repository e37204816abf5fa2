"""Servers that misbehave or die: nothing that arrived is lost, the status says why."""

from __future__ import annotations

import asyncio
import logging

import grpc
import pytest
from engine_helpers import Recorder

from remsvc_core.engine import NO_RETRY, RetryPolicy, run_commands, run_commands_sync
from remsvc_core.hookspecs import hookimpl

pytestmark = pytest.mark.timeout(120)

THREE = ["echo one", "echo two", "echo three"]


async def test_invalid_utf8_is_replaced_and_the_stream_goes_on(misbehaving):
    """The upstream server's failure mode: raw bytes in out/err must not kill the call."""
    server = misbehaving(raw_out={2: b"ok \xff\xfe end"}, raw_err={2: b"\xc3\x28"})

    outcome = await run_commands(THREE, server.settings(), stream_timeout=30)

    assert outcome.complete, outcome.describe_failure()
    second = outcome.results[2]
    assert second.decode_replaced
    assert second.out == "ok \ufffd\ufffd end"
    assert second.err == "\ufffd("
    assert not outcome.results[1].decode_replaced
    assert outcome.results[3].out == "ran echo three\n"  # the result after the bad bytes


async def test_repeated_tid_never_overwrites_the_first_answer(misbehaving, recorder: Recorder):
    server = misbehaving(repeat_tids=frozenset({2}))

    outcome = await run_commands(THREE, server.settings(), hooks=[recorder])

    assert outcome.complete
    assert outcome.results[2].rc == 0
    assert outcome.results[2].out == "ran echo two\n"
    [duplicate] = outcome.unexpected
    assert (duplicate.tid, duplicate.reason, duplicate.rc) == (2, "duplicate", 99)
    assert recorder.result_tids() == [1, 2, 3]
    assert ("unexpected", ("duplicate", 2)) in recorder.events


async def test_unknown_tid_and_garbage_are_reported_not_kept(misbehaving, recorder: Recorder):
    server = misbehaving(unknown_tids=(77, -5), garbage_after_first=True)

    outcome = await run_commands(THREE, server.settings(), hooks=[recorder])

    assert outcome.complete, outcome.describe_failure()
    assert sorted(outcome.results) == [1, 2, 3]
    assert [(u.tid, u.reason) for u in outcome.unexpected] == [
        (77, "unknown"),
        (-5, "unknown"),
        (0, "malformed"),
    ]
    assert "do not parse" in outcome.unexpected[2].err
    assert recorder.result_tids() == [1, 2, 3]


async def test_reverse_order_answers_are_correlated(misbehaving, recorder: Recorder):
    server = misbehaving(reverse=True)

    outcome = await run_commands(THREE, server.settings(), hooks=[recorder])

    assert outcome.complete
    assert recorder.result_tids() == [3, 2, 1]
    assert [r.out for r in outcome.ordered_results()] == [f"ran {c}\n" for c in THREE]


async def test_failure_after_some_answers_keeps_them(misbehaving):
    server = misbehaving(
        fail_after_answers=2, fail_code=grpc.StatusCode.ABORTED, fail_details="disk full"
    )

    outcome = await run_commands(
        ["a", "b", "c", "d"], server.settings(), retry=RetryPolicy(attempts=5)
    )

    assert (outcome.status_code, outcome.status_details) == ("ABORTED", "disk full")
    assert sorted(outcome.results) == [1, 2]
    assert outcome.missing_tids == [3, 4]
    assert outcome.attempts == 1
    assert not outcome.complete
    assert "2 of 4 result(s) arrived" in outcome.describe_failure()


async def test_server_that_never_answers_hits_the_deadline(misbehaving):
    server = misbehaving(never_answer=True)

    outcome = await asyncio.wait_for(
        run_commands(THREE, server.settings(), stream_timeout=1.0), timeout=30
    )

    assert outcome.status_code == "DEADLINE_EXCEEDED"
    assert outcome.missing_tids == [1, 2, 3]
    assert server.tids_read() == [1, 2, 3]  # it did receive them; it just never answered
    assert outcome.attempts == 1


async def test_response_over_the_receive_limit_fails_alone(misbehaving):
    server = misbehaving(out_size={2: 2 * 1024 * 1024})
    settings = server.settings(max_receive_bytes=1024 * 1024)

    outcome = await run_commands(THREE, settings, retry=RetryPolicy(attempts=3))

    assert outcome.status_code == "RESOURCE_EXHAUSTED"
    assert sorted(outcome.results) == [1]
    assert outcome.attempts == 1  # commands were written: never retried
    assert len(server.tids_read()) <= 3


async def test_server_killed_mid_stream_keeps_partial_results(server_process, recorder: Recorder):
    """A real server process, SIGKILLed while a command runs."""
    process = server_process()

    class KillAfterSecond:
        @hookimpl
        def remsvc_result(self, result):
            if result.tid == 2:
                process.kill()

    outcome = await run_commands(
        ["echo one", "echo two", "sleep 8", "echo four"],
        _settings_for(process),
        stream_timeout=60,
        hooks=[KillAfterSecond(), recorder],
        retry=RetryPolicy(attempts=4, initial_backoff_s=0.1),
    )

    assert process.wait(timeout=15) != 0
    assert outcome.status_code == "UNAVAILABLE", outcome.status_details
    assert sorted(outcome.results) == [1, 2]
    assert [outcome.results[t].out for t in (1, 2)] == ["one\n", "two\n"]
    assert outcome.missing_tids == [3, 4]
    assert outcome.attempts == 1
    assert recorder.names()[-1] == "finished"


async def test_denied_command_status_survives_a_busy_writer(remsvc_server_factory):
    """The server ends the stream while thousands of writes are still queued.

    grpc.aio then tends to report INTERNAL "Internal error from Core" instead of the
    server's status (grpc/grpc#36066); the engine must still report PERMISSION_DENIED.
    """
    server = remsvc_server_factory(denylist=[("nope", "^forbidden")])
    commands = ["echo a", "echo b", "forbidden thing", *[f"echo {i}" for i in range(3000)]]

    outcome = await run_commands(commands, server.settings(), stream_timeout=60, retry=NO_RETRY)

    assert outcome.status_code == "PERMISSION_DENIED", outcome.status_details
    assert sorted(outcome.results) == [1, 2]
    assert outcome.missing_tids[0] == 3
    assert len(outcome.missing_tids) == 3001


@pytest.mark.parametrize("round_", range(5))
async def test_server_status_not_masked_when_writes_are_in_flight(misbehaving, round_):
    server = misbehaving(
        fail_after_reading=1,
        fail_code=grpc.StatusCode.PERMISSION_DENIED,
        fail_details="denied by test",
    )
    commands = [f"echo {i}" for i in range(5000)]

    outcome = await run_commands(commands, server.settings(), retry=NO_RETRY)

    assert (outcome.status_code, outcome.status_details) == ("PERMISSION_DENIED", "denied by test")
    assert outcome.results == {}


def _settings_for(process):
    from remsvc_core.settings import ChannelSettings

    return ChannelSettings(target=process.target)


async def test_unanswered_commands_on_the_wire_are_bounded(misbehaving):
    """The writer keeps a window of unanswered commands, so no write waits on HTTP/2
    flow control (a pending write is what lets grpc mask the server's status)."""
    server = misbehaving(never_answer=True)
    commands = [f"echo {i}" for i in range(1000)]

    outcome = await run_commands(commands, server.settings(), stream_timeout=1.5)

    assert outcome.status_code == "DEADLINE_EXCEEDED"
    assert server.tids_read() == list(range(1, 257))


async def test_server_that_answers_only_after_the_whole_batch(misbehaving, monkeypatch):
    """Not how RemSvc servers behave, but it must not hang: after a spell without any
    answer the engine sends the rest of the batch regardless of the window."""
    from remsvc_core import send_window

    monkeypatch.setattr(send_window, "FIRST_ANSWER_PATIENCE_S", 0.3)  # a tuning knob, not a mock
    server = misbehaving(reverse=True)
    commands = [f"echo {i}" for i in range(600)]

    outcome = await run_commands(commands, server.settings(), stream_timeout=60)

    assert outcome.complete, outcome.describe_failure()
    assert server.tids_read() == list(range(1, 601))


def test_server_status_details_reach_the_log_escaped(misbehaving, caplog):
    """A server's status details can hold escape sequences and newlines (issue 12.9):
    the engine's log lines carry them escaped, while the outcome keeps them as sent."""
    details = "boom\x1b[2J\nforged line"
    server = misbehaving(
        fail_after_answers=1, fail_code=grpc.StatusCode.INTERNAL, fail_details=details
    )
    caplog.set_level(logging.INFO, logger="remsvc_core")
    outcome = run_commands_sync(["echo a", "echo b"], server.settings(), stream_timeout=20)
    assert outcome.status_details == details
    logged = "\n".join(record.getMessage() for record in caplog.records)
    assert "boom\\x1b[2J\\nforged line" in logged
    assert "\x1b" not in logged
