"""Faults mid-stream, with nothing lost and nothing run twice.

Each test injects one fault into a stream that is already delivering results: the
server process SIGKILLed, the TCP connection cut by a proxy (reset, stalled,
half-closed either way), a server that never answers, a server restarted between
attempts, a server that breaks the protocol. Every time the outcome must keep each
result that arrived, list each tid that did not, say what happened, and the
commands' own execution log must show no tid twice.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from abrupt_server import DETAILS as ABORT_DETAILS, AbruptServer
from fault_proxy import FaultProxy
from reliability_checks import (
    Arrivals,
    check_nothing_lost,
    executions,
    free_port,
    reads_once,
    recorded,
)

from remsvc_core.engine import RetryPolicy, run_commands, run_commands_sync
from remsvc_core.probes import get_status
from remsvc_core.results import StreamOutcome
from remsvc_core.settings import ChannelSettings

pytestmark = [pytest.mark.reliability, pytest.mark.timeout(120)]

STEP = "sleep 0.3"  # long enough that a fault fired at result k lands before result k+1


def batch(log: Path, count: int, work: str = STEP) -> list[str]:
    return [recorded(log, tid, work) for tid in range(1, count + 1)]


def settings_for(target: str) -> ChannelSettings:
    return ChannelSettings(target=target)


# -- the server process dies ---------------------------------------------------------


async def test_server_sigkilled_mid_stream(server_process, scratch, figures):
    server = server_process()
    log = scratch / "ran"
    arrivals = Arrivals(at=3, action=server.kill)

    outcome = await run_commands(
        batch(log, 8), settings_for(server.target), stream_timeout=30, hooks=[arrivals]
    )
    figures.fault("server SIGKILL")

    assert server.wait(timeout=15) != 0
    assert outcome.status_code == "UNAVAILABLE", outcome.status_details
    assert outcome.attempts == 1, "commands were written: the stream must not be retried"
    assert set(arrivals.tids) >= {1, 2, 3}
    assert [outcome.results[t].out for t in (1, 2, 3)] == [f"result-{t}\n" for t in (1, 2, 3)]
    assert outcome.missing_tids == list(range(len(outcome.results) + 1, 9))
    await asyncio.sleep(0.5)  # the orphaned command of tid 4 may still append its line
    check_nothing_lost(outcome, arrivals, figures, log=log)


# -- the connection is cut by a proxy -------------------------------------------------


@pytest.fixture
def proxied(remsvc_server_factory) -> Iterator[FaultProxy]:
    server = remsvc_server_factory()
    with FaultProxy(("127.0.0.1", server.port)) as proxy:
        yield proxy


@pytest.mark.parametrize(
    ("fault", "expected_codes"),
    [
        ("drop", {"UNAVAILABLE"}),
        ("half_close_to_client", {"UNAVAILABLE"}),
        ("half_close_to_server", {"UNAVAILABLE"}),
        # Nothing tells the client a stalled peer is gone: only its deadline ends it.
        ("stall", {"DEADLINE_EXCEEDED"}),
    ],
)
async def test_connection_cut_mid_stream(proxied, scratch, figures, fault, expected_codes):
    log = scratch / "ran"
    inject = {
        "drop": proxied.drop,
        "stall": proxied.stall,
        "half_close_to_client": lambda: proxied.half_close("to_client"),
        "half_close_to_server": lambda: proxied.half_close("to_server"),
    }[fault]
    arrivals = Arrivals(at=2, action=inject)

    outcome = await run_commands(
        batch(log, 6), settings_for(proxied.target), stream_timeout=4, hooks=[arrivals]
    )
    figures.fault(f"proxy {fault.replace('_', ' ')}")

    assert proxied.faults, "the fault was never injected"
    assert outcome.status_code in expected_codes, (outcome.status_code, outcome.status_details)
    assert outcome.attempts == 1
    assert {1, 2} <= set(outcome.results)
    assert outcome.missing_tids, "a cut stream cannot have delivered every result"
    assert outcome.status_code in outcome.describe_failure()
    proxied.close()  # a stalled server side learns the client is gone only now
    check_nothing_lost(outcome, arrivals, figures, log=log)


# -- a server that never answers ---------------------------------------------------------


async def test_server_reads_everything_and_never_answers(misbehaving, figures):
    server = misbehaving(never_answer=True)
    arrivals = Arrivals()

    outcome = await run_commands(
        ["echo a", "echo b", "echo c"], server.settings(), stream_timeout=1.5, hooks=[arrivals]
    )
    figures.fault("server never answers")

    assert outcome.status_code == "DEADLINE_EXCEEDED", outcome.status_details
    assert outcome.results == {}
    assert outcome.missing_tids == [1, 2, 3]
    assert "no result for tid(s) 1, 2, 3" in outcome.describe_failure()
    assert sorted(reads_once(server, figures)) == [1, 2, 3]
    check_nothing_lost(outcome, arrivals, figures)


@pytest.fixture
def black_hole() -> Iterator[int]:
    """A port that accepts TCP connections and then never reads or writes a byte."""
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(0.05)
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                held.append(listener.accept()[0])

    thread = threading.Thread(target=accept, name="black-hole", daemon=True)
    thread.start()
    try:
        yield listener.getsockname()[1]
    finally:
        stop.set()
        thread.join(timeout=5)
        for sock in [*held, listener]:
            sock.close()


async def test_server_accepts_and_never_speaks(black_hole, figures):
    arrivals = Arrivals()

    outcome = await run_commands(
        ["echo a", "echo b"],
        settings_for(f"127.0.0.1:{black_hole}"),
        stream_timeout=2,
        hooks=[arrivals],
    )
    figures.fault("server accepts, never speaks")

    # grpc gives up on the HTTP/2 handshake (UNAVAILABLE, nothing written, so retried
    # while time remains) or the deadline ends it first; either way it ends, and says so.
    assert outcome.status_code in ("UNAVAILABLE", "DEADLINE_EXCEEDED"), outcome.status_details
    assert outcome.status_details
    assert outcome.missing_tids == [1, 2]
    check_nothing_lost(outcome, arrivals, figures)


# -- a server restarted between attempts ------------------------------------------------


async def test_restart_before_the_first_write_is_retried_and_runs_once(
    server_on_port, scratch, figures
):
    port = free_port()
    first = server_on_port(port)
    first.kill()  # the server goes down for a restart...
    first.wait()
    log = scratch / "ran"
    restarted: list[object] = []
    # ...and comes back while the client is retrying.
    timer = threading.Timer(0.6, lambda: restarted.append(server_on_port(port)))
    timer.start()
    try:
        outcome = await run_commands(
            batch(log, 5, work=""),
            settings_for(f"127.0.0.1:{port}"),
            stream_timeout=60,
            retry=RetryPolicy(attempts=12, initial_backoff_s=0.3, max_backoff_s=1.0),
        )
    finally:
        timer.join()
    figures.fault("server restarted before the first write")

    assert restarted, "the server never came back"
    assert outcome.complete, outcome.describe_failure()
    assert outcome.attempts >= 2, "the first attempt should have found the server down"
    ran = executions(log)
    figures.executions(sum(ran.values()), sum(1 for c in ran.values() if c > 1))
    figures.lost(5, 5 - len(outcome.results))
    assert ran == {tid: 1 for tid in range(1, 6)}, ran


async def test_restart_after_the_first_write_is_not_retried(server_on_port, scratch, figures):
    port = free_port()
    first = server_on_port(port)
    log = scratch / "ran"
    restarted: list[object] = []

    def restart() -> None:
        first.kill()
        first.wait()
        restarted.append(server_on_port(port))

    # Restarting takes a moment; do it off the event loop the hook runs on.
    arrivals = Arrivals(at=2, action=lambda: threading.Thread(target=restart).start())
    outcome = await run_commands(
        batch(log, 6),
        settings_for(f"127.0.0.1:{port}"),
        stream_timeout=60,
        hooks=[arrivals],
        retry=RetryPolicy(attempts=12, initial_backoff_s=0.3, max_backoff_s=1.0),
    )
    figures.fault("server restarted after the first write")

    assert outcome.status_code == "UNAVAILABLE", outcome.status_details
    assert outcome.attempts == 1, "a stream whose commands were written must not be retried"
    assert {1, 2} <= set(outcome.results)
    for _ in range(100):  # bounded: the restarted server may take a moment to be up
        if restarted:
            break
        await asyncio.sleep(0.1)
    assert restarted
    status = await get_status(settings_for(f"127.0.0.1:{port}"), timeout=10)
    assert status.fields["commands"] == "0", "the restarted server was sent commands again"
    check_nothing_lost(outcome, arrivals, figures, log=log)


# -- a server that breaks the protocol --------------------------------------------------


def assert_misbehaviour_reported(outcome: StreamOutcome, expected: list[tuple[str, int]]) -> None:
    got = sorted((u.reason, u.tid) for u in outcome.unexpected)
    assert got == sorted(expected), got
    failure = outcome.describe_failure()
    for reason, tid in expected:
        assert f"tid {tid} ({reason})" in failure, failure


async def test_repeated_tid_keeps_the_first_answer(misbehaving, figures):
    server = misbehaving(repeat_tids=frozenset({2}))
    arrivals = Arrivals()

    outcome = await run_commands(
        ["echo a", "echo b", "echo c"], server.settings(), stream_timeout=20, hooks=[arrivals]
    )
    figures.fault("repeated tid")

    assert outcome.status_code == "OK"
    assert sorted(outcome.results) == [1, 2, 3]
    assert outcome.results[2].rc == 0, "the repeat (rc 99) must not replace the first answer"
    assert outcome.results[2].out == "ran echo b\n"
    assert arrivals.unexpected == [("duplicate", 2)]
    assert_misbehaviour_reported(outcome, [("duplicate", 2)])
    assert sorted(reads_once(server, figures)) == [1, 2, 3]
    check_nothing_lost(outcome, arrivals, figures)


async def test_unknown_tid_is_reported_not_kept(misbehaving, figures):
    server = misbehaving(unknown_tids=(77, -5))
    arrivals = Arrivals()

    outcome = await run_commands(
        ["echo a", "echo b"], server.settings(), stream_timeout=20, hooks=[arrivals]
    )
    figures.fault("unknown tid", 2)

    assert sorted(outcome.results) == [1, 2]
    assert 77 not in outcome.results
    assert sorted(reads_once(server, figures)) == [1, 2]
    assert_misbehaviour_reported(outcome, [("unknown", 77), ("unknown", -5)])
    check_nothing_lost(outcome, arrivals, figures)


async def test_invalid_utf8_is_kept_and_the_stream_goes_on(misbehaving, figures):
    server = misbehaving(raw_out={2: b"caf\xc3\xa9 \xff\xfe end\n"}, raw_err={3: b"\x80bad"})
    arrivals = Arrivals()

    outcome = await run_commands(
        ["echo before", "printf bad", "echo after", "echo last"],
        server.settings(),
        stream_timeout=20,
        hooks=[arrivals],
    )
    figures.fault("invalid UTF-8", 2)

    assert outcome.complete, outcome.describe_failure()
    assert outcome.results[2].out == "caf\u00e9 \ufffd\ufffd end\n"
    assert outcome.results[2].decode_replaced
    assert outcome.results[3].err == "\ufffdbad"
    assert outcome.results[4].out == "ran echo last\n"
    assert not outcome.results[1].decode_replaced
    assert sorted(reads_once(server, figures)) == [1, 2, 3, 4]
    check_nothing_lost(outcome, arrivals, figures)


async def test_every_misbehaviour_at_once_then_the_call_fails(misbehaving, figures):
    server = misbehaving(
        repeat_tids=frozenset({1}),
        unknown_tids=(42,),
        garbage_after_first=True,
        raw_out={2: b"\xff\xfe"},
        fail_after_answers=3,
        fail_code=grpc.StatusCode.INTERNAL,
        fail_details="server fell over",
    )
    arrivals = Arrivals()

    outcome = await run_commands(
        [f"echo {n}" for n in range(1, 7)], server.settings(), stream_timeout=20, hooks=[arrivals]
    )
    figures.fault("combined misbehaviour then failure")

    assert outcome.status_code == "INTERNAL"
    assert outcome.status_details == "server fell over"
    assert sorted(outcome.results) == [1, 2, 3]
    assert outcome.results[1].rc == 0
    assert outcome.results[2].out == "\ufffd\ufffd"
    assert outcome.missing_tids == [4, 5, 6]
    reasons = sorted((u.reason, u.tid) for u in outcome.unexpected)
    assert reasons == [("duplicate", 1), ("malformed", 0), ("unknown", 42)]
    failure = outcome.describe_failure()
    assert "no result for tid(s) 4, 5, 6" in failure
    assert "3 of 6 result(s) arrived and are kept" in failure
    assert set(reads_once(server, figures)) <= set(range(1, 7))
    check_nothing_lost(outcome, arrivals, figures)


# -- responses buffered when grpc.aio fails the call from a pending write -----------------


@pytest.mark.parametrize("answered", [3, 10])
async def test_responses_sent_just_before_an_abort_are_kept(figures, answered):
    """Regression: the engine stopped reading once grpc.aio marked the call failed.

    A write still pending as the server ends the stream makes grpc.aio set INTERNAL
    "Internal error from Core" on the call; ``read()`` then refuses to return the
    responses gRPC Core had already received. Before the engine drained them, about
    half of these streams lost some of the answered results.
    """
    commands = [f"echo {n}" for n in range(1, 301)]  # still being written at the abort
    with AbruptServer(answer=answered) as server:
        for _ in range(20):
            arrivals = Arrivals()
            outcome = await run_commands(
                commands, server.settings(), stream_timeout=20, hooks=[arrivals]
            )
            figures.fault("abort with a write pending")
            figures.lost(answered, answered - len(outcome.results))
            assert sorted(outcome.results) == list(range(1, answered + 1)), outcome.status_details
            assert (outcome.status_code, outcome.status_details) == ("INTERNAL", ABORT_DETAILS)
            check_nothing_lost(outcome, arrivals, figures)


# -- a server that floods the client (issue 12.5) ------------------------------------------


def _peak_rss_reset() -> int:
    """Reset this process's peak resident set (VmHWM) and return the current one."""
    with open("/proc/self/clear_refs", "w") as handle:
        handle.write("5")
    return _status_kib("VmRSS") * 1024


def _status_kib(field: str) -> int:
    with open("/proc/self/status") as handle:
        for line in handle:
            if line.startswith(f"{field}:"):
                return int(line.split()[1])
    raise AssertionError(f"no {field} in /proc/self/status")


def test_a_server_flooding_unknown_tids_cannot_exhaust_the_client(misbehaving, figures):
    """Before: 2.5 GiB in run_commands_sync, stopped only by the stream timeout. Now the
    first few unexpected responses are kept (their text cut short) and past a bound the
    client ends the stream, keeping every real result."""
    flood = (20_000, 64 * 1024)  # 20,000 responses of 2 x 64 KiB: 2.5 GiB on the wire
    server = misbehaving(flood_unknown=flood)
    before = _peak_rss_reset()
    outcome = run_commands_sync(["echo one", "echo two"], server.settings(), stream_timeout=60)
    growth_mib = (_status_kib("VmHWM") * 1024 - before) / 2**20
    figures.fault("unknown-tid flood")
    figures.note(f"client under a 2.5 GiB unknown-tid flood: peak RSS +{growth_mib:.0f} MiB")
    print(f"peak RSS growth {growth_mib:.1f} MiB; status {outcome.status_code}")
    assert outcome.results[1].out == "ran echo one\n"
    assert outcome.status_code == "CANCELLED"
    assert "responses nobody asked for" in outcome.status_details
    assert outcome.unexpected_count >= 1000
    assert len(outcome.unexpected) == 100
    assert all(len(u.out) <= 1024 for u in outcome.unexpected)
    assert "(and " in outcome.describe_failure()
    assert growth_mib < 200
