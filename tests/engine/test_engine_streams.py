"""Streams against the real reference server: sizes, order, correlation, bad input."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from engine_helpers import Recorder

from remsvc_core import command_hash
from remsvc_core.commands import Command, validate_commands
from remsvc_core.engine import RetryPolicy, run_commands
from remsvc_core.errors import CommandValidationError, SettingsError
from remsvc_core.settings import ChannelSettings

pytestmark = pytest.mark.timeout(120)


async def test_one_command_gives_one_complete_result(remsvc_server):
    outcome = await run_commands(["echo hello"], remsvc_server.settings(), stream_timeout=30)

    assert outcome.status_code == "OK"
    assert outcome.complete
    assert outcome.attempts == 1
    assert outcome.target == remsvc_server.target
    assert outcome.elapsed_s > 0
    result = outcome.results[1]
    assert (result.tid, result.rc, result.out, result.err) == (1, 0, "hello\n", "")
    assert result.cmd == "echo hello"
    assert result.hsh == command_hash("echo hello")
    assert result.latency_s > 0
    assert not result.decode_replaced


async def test_twelve_commands_come_back_in_command_order(remsvc_server):
    commands = [
        {"cmd": f"echo out{i}; echo err{i} >&2; exit {i % 4}", "src": "test"} for i in range(12)
    ]
    outcome = await run_commands(commands, remsvc_server.settings(), stream_timeout=60)

    assert outcome.complete, outcome.describe_failure()
    ordered = outcome.ordered_results()
    assert [r.tid for r in ordered] == list(range(1, 13))
    assert [r.out for r in ordered] == [f"out{i}\n" for i in range(12)]
    assert [r.err for r in ordered] == [f"err{i}\n" for i in range(12)]
    assert [r.rc for r in ordered] == [i % 4 for i in range(12)]
    assert list(outcome.raw_results()) == list(range(1, 13))


@pytest.mark.slow
async def test_two_thousand_commands_in_one_stream(remsvc_server):
    commands = [f"echo {i}" for i in range(2000)]
    outcome = await run_commands(commands, remsvc_server.settings(), stream_timeout=240)

    assert outcome.complete, outcome.describe_failure()
    assert outcome.attempts == 1
    assert [r.out for r in outcome.ordered_results()] == [f"{i}\n" for i in range(2000)]
    assert remsvc_server.commands_run == 2000


async def test_responses_out_of_order_are_matched_by_tid(
    remsvc_server_factory, recorder: Recorder, tmp_path: Path
):
    """With max_parallel the server answers as commands end: tid 1 waits for tid 4."""
    server = remsvc_server_factory(max_parallel=4)
    flag = tmp_path / "flag"
    wait_for_flag = f"for i in $(seq 400); do [ -f '{flag}' ] && break; sleep 0.05; done; echo one"
    commands = [wait_for_flag, "echo two", "echo three", f"touch '{flag}'; echo four"]

    outcome = await run_commands(commands, server.settings(), stream_timeout=60, hooks=[recorder])

    assert outcome.complete, outcome.describe_failure()
    arrival = recorder.result_tids()
    assert sorted(arrival) == [1, 2, 3, 4]
    assert arrival.index(4) < arrival.index(1)  # tid 1 could only end after tid 4
    assert [r.out for r in outcome.ordered_results()] == ["one\n", "two\n", "three\n", "four\n"]


async def test_already_validated_commands_are_sent_as_given(misbehaving):
    server = misbehaving()
    batch = validate_commands([{"cmd": "a", "src": "s1"}, "b"], default_src="dflt")

    outcome = await run_commands(batch, server.settings(), stream_timeout=30)

    assert outcome.complete
    assert [(r.tid, r.cmd, r.src) for r in server.received] == [(1, "a", "s1"), (2, "b", "dflt")]
    assert [r.hsh for r in server.received] == [command_hash("a"), command_hash("b")]


async def test_default_src_fills_src(misbehaving):
    server = misbehaving()
    await run_commands(["a", {"cmd": "b", "src": "mine"}], server.settings(), default_src="dag.t1")
    assert [r.src for r in server.received] == ["dag.t1", "mine"]


@pytest.mark.parametrize(
    ("commands", "message"),
    [
        ([], "empty"),
        ("echo hi", "must be a list"),
        ([{"cmd": "   "}], "blank"),
        ([{"cmd": "x", "bogus": 1}], "unknown field"),
        ([{"cmd": "x", "cmdtyp": 7}], "cmdtyp"),
        ([{"cmd": "bad \ud800 surrogate"}], "UTF-8"),
        ([Command(tid=1, cmd="a"), Command(tid=1, cmd="b")], "distinct tids"),
    ],
)
async def test_bad_commands_fail_before_anything_is_sent(misbehaving, commands, message):
    server = misbehaving()
    with pytest.raises(CommandValidationError, match=message):
        await run_commands(commands, server.settings())
    assert server.calls == 0


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"stream_timeout": 0}, "stream_timeout"),
        ({"stream_timeout": float("nan")}, "stream_timeout"),
        ({"metadata": [("x-a",)]}, "metadata"),
        ({"retry": "twice"}, "RetryPolicy"),
    ],
)
async def test_bad_options_fail_before_anything_is_sent(misbehaving, kwargs, message):
    server = misbehaving()
    with pytest.raises(SettingsError, match=message):
        await run_commands(["echo"], server.settings(), **kwargs)
    assert server.calls == 0


async def test_settings_must_be_channel_settings():
    with pytest.raises(SettingsError, match="ChannelSettings"):
        await run_commands(["echo"], "127.0.0.1:1")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "policy",
    [
        {"attempts": 0},
        {"attempts": True},
        {"initial_backoff_s": -1},
        {"max_backoff_s": float("inf")},
        {"multiplier": 0.5},
    ],
)
def test_retry_policy_rejects_nonsense(policy):
    with pytest.raises(SettingsError, match="RetryPolicy"):
        RetryPolicy(**policy)


def test_retry_backoff_grows_and_is_capped():
    policy = RetryPolicy(attempts=6, initial_backoff_s=0.5, max_backoff_s=3.0, multiplier=2.0)
    assert [policy.backoff_s(n) for n in range(1, 6)] == [0.5, 1.0, 2.0, 3.0, 3.0]


async def test_call_metadata_is_sent_and_the_token_wins(misbehaving):
    server = misbehaving()
    settings = ChannelSettings(
        target=server.target, metadata=(("x-team", "ops"),), bearer_token="tok-123"
    )
    # Mocks nothing: the server records what it really received on the wire.
    await run_commands(
        ["echo"],
        settings,
        metadata=[("X-Trace", "abc"), ("authorization", "Bearer intruder")],
    )
    received = server.metadata[0]
    assert received["x-team"] == "ops"
    assert received["x-trace"] == "abc"
    assert received["authorization"] == "Bearer tok-123"


async def test_concurrent_streams_share_nothing_but_the_channel(remsvc_server):
    settings = remsvc_server.settings()
    outcomes = await asyncio.wait_for(
        asyncio.gather(
            *(run_commands([f"echo s{n}-{i}" for i in range(5)], settings) for n in range(4))
        ),
        timeout=60,
    )
    for n, outcome in enumerate(outcomes):
        assert outcome.complete
        assert [r.out for r in outcome.ordered_results()] == [f"s{n}-{i}\n" for i in range(5)]
