"""The four RPCs against a real ``remsvc-server`` subprocess, spoken with the raw stub."""

from __future__ import annotations

import re
import socket
import threading

import grpc
import pytest
from support.server_process import run_stream

from remsvc_core.hashing import command_hash
from remsvc_core.server.capture import truncation_marker
from remsvc_core.wire import pb, pb_grpc


def wait_for_file_cmd(path: object, *, tries: int, found: str, missing: str) -> str:
    """Shell that polls for ``path`` (``tries`` x 50 ms), then runs ``found`` or ``missing``."""
    return (
        f"i=0; while [ $i -lt {tries} ]; do [ -e {path} ] && {{ {found}; exit 0; }}; "
        f"sleep 0.05; i=$((i+1)); done; {missing}"
    )


def test_ping_echoes_seq_time_and_data(stub):
    reply = stub.Ping(
        pb.PingMsg(seq=7, time=1_700_000_000_123, data=b"\x00\xffpayload"), timeout=10
    )
    assert (reply.seq, reply.time, reply.data) == (7, 1_700_000_000_123, b"\x00\xffpayload")


def test_get_status_reports_uptime_and_counts_commands(stub):
    before = stub.GetStatus(pb.Empty(), timeout=10)
    match = re.fullmatch(r"state=OK uptime=(\d+)s commands=(\d+)", before.msg)
    assert before.rc == 0
    assert match, before.msg
    stub.RemCmd(pb.RemCmdMsg(cmd="true", tid=1), timeout=10)
    run_stream(stub, [pb.RemCmdMsg(cmd="true", tid=1), pb.RemCmdMsg(cmd="false", tid=2)])
    after = re.fullmatch(
        r"state=OK uptime=(\d+)s commands=(\d+)", stub.GetStatus(pb.Empty(), timeout=10).msg
    )
    assert after
    assert int(after.group(2)) == int(match.group(2)) + 3
    assert int(after.group(1)) >= int(match.group(1))


def test_remcmd_runs_one_command_and_echoes_tid_and_hash(stub):
    cmd = "echo out; echo err >&2; exit 3"
    reply = stub.RemCmd(
        pb.RemCmdMsg(cmd=cmd, tid=42, src="test", hsh=command_hash(cmd)), timeout=10
    )
    assert (reply.tid, reply.rc, reply.out, reply.err, reply.hsh) == (
        42,
        3,
        "out\n",
        "err\n",
        command_hash(cmd),
    )


def test_empty_hash_skips_the_check(stub):
    reply = stub.RemCmd(pb.RemCmdMsg(cmd="echo ok", tid=1, hsh=""), timeout=10)
    assert (reply.rc, reply.out, reply.hsh) == (0, "ok\n", "")


def test_remcmd_hash_mismatch_is_invalid_argument(stub):
    with pytest.raises(grpc.RpcError) as caught:
        stub.RemCmd(pb.RemCmdMsg(cmd="echo hi", tid=1, hsh=command_hash("echo HI")), timeout=10)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert caught.value.details() == "hash mismatch"


def test_uppercase_hash_digits_do_not_match(stub):
    # Upstream compares the hex digits case-sensitively; so do we.
    with pytest.raises(grpc.RpcError) as caught:
        stub.RemCmd(
            pb.RemCmdMsg(cmd="echo hi", tid=1, hsh=command_hash("echo hi").upper()), timeout=10
        )
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT


def test_stream_runs_commands_in_order_and_echoes_tid_and_hash(stub):
    cmds = ["echo one", "echo two >&2; exit 4", "printf three"]
    requests = [
        pb.RemCmdMsg(cmd=c, tid=i, src="t", hsh=command_hash(c)) for i, c in enumerate(cmds, 1)
    ]
    run = run_stream(stub, requests)
    assert run.code == grpc.StatusCode.OK
    assert [(r.tid, r.rc, r.out, r.err, r.hsh) for r in run.responses] == [
        (1, 0, "one\n", "", command_hash(cmds[0])),
        (2, 4, "", "two\n", command_hash(cmds[1])),
        (3, 0, "three", "", command_hash(cmds[2])),
    ]


def test_stream_hash_mismatch_ends_the_stream_after_earlier_results(stub, scratch):
    later = scratch / "later-ran"
    requests = [
        pb.RemCmdMsg(cmd="echo first", tid=1, hsh=command_hash("echo first")),
        pb.RemCmdMsg(cmd="echo second", tid=2, hsh="00000000"),
        pb.RemCmdMsg(cmd=f"touch {later}", tid=3),
    ]
    run = run_stream(stub, requests)
    assert [(r.tid, r.out) for r in run.responses] == [(1, "first\n")]
    assert run.code == grpc.StatusCode.INVALID_ARGUMENT
    assert run.details == "hash mismatch"
    assert not later.exists()


def test_sequential_by_default_second_command_waits_for_the_first(stub, scratch):
    # Command 1 waits (bounded) for a file that command 2 creates. Run one at a time,
    # command 1 gives up and says so; had they overlapped it would have seen the file.
    flag = scratch / "flag"
    first = wait_for_file_cmd(flag, tries=10, found="echo saw", missing="echo alone")
    run = run_stream(
        stub, [pb.RemCmdMsg(cmd=first, tid=1), pb.RemCmdMsg(cmd=f"touch {flag}", tid=2)]
    )
    assert [(r.tid, r.out) for r in run.responses] == [(1, "alone\n"), (2, "")]


def test_max_parallel_runs_concurrently_and_answers_out_of_order(server_process, scratch):
    server = server_process(max_parallel=2)
    flag = scratch / "flag"
    first = wait_for_file_cmd(flag, tries=200, found="echo saw", missing="exit 1")
    with grpc.insecure_channel(server.target) as channel:
        run = run_stream(
            pb_grpc.RemSvcStub(channel),
            [pb.RemCmdMsg(cmd=first, tid=1), pb.RemCmdMsg(cmd=f"touch {flag}; echo made", tid=2)],
        )
    assert run.code == grpc.StatusCode.OK
    assert [(r.tid, r.rc, r.out) for r in run.responses] == [(2, 0, "made\n"), (1, 0, "saw\n")]


def test_separate_streams_are_independent(shared_server, scratch):
    # Stream A waits for a file that stream B creates: a server serialising streams would
    # leave A to give up (exit 1) before B ever ran.
    flag = scratch / "flag"
    waiter = wait_for_file_cmd(flag, tries=200, found="exit 0", missing="exit 1")
    results: dict[str, object] = {}

    def stream_a() -> None:
        with grpc.insecure_channel(shared_server.target) as channel:
            results["a"] = run_stream(
                pb_grpc.RemSvcStub(channel), [pb.RemCmdMsg(cmd=waiter, tid=1)]
            )

    thread = threading.Thread(target=stream_a)
    thread.start()
    with grpc.insecure_channel(shared_server.target) as channel:
        b = run_stream(
            pb_grpc.RemSvcStub(channel), [pb.RemCmdMsg(cmd=f"sleep 0.2; touch {flag}", tid=1)]
        )
    thread.join(timeout=30)
    assert not thread.is_alive()
    assert b.responses[0].rc == 0
    assert results["a"].responses[0].rc == 0


def test_stdin_is_closed_so_reading_commands_see_eof(stub):
    run = run_stream(
        stub,
        [
            pb.RemCmdMsg(cmd="cat; echo after-cat", tid=1),
            pb.RemCmdMsg(cmd="read x; echo rc=$?", tid=2),
        ],
    )
    assert [(r.rc, r.out) for r in run.responses] == [(0, "after-cat\n"), (0, "rc=1\n")]


def test_non_utf8_output_is_replaced_and_the_stream_goes_on(stub):
    cmds = ["echo before", r"printf '\377\376ok'; printf '\377' >&2", "echo after"]
    run = run_stream(stub, [pb.RemCmdMsg(cmd=c, tid=i) for i, c in enumerate(cmds, 1)])
    assert run.code == grpc.StatusCode.OK
    assert [(r.tid, r.out, r.err) for r in run.responses] == [
        (1, "before\n", ""),
        (2, "\ufffd\ufffdok", "\ufffd"),
        (3, "after\n", ""),
    ]


def test_default_output_cap_uses_the_upstream_marker(stub):
    reply = stub.RemCmd(
        pb.RemCmdMsg(
            cmd="head -c 300000 /dev/zero | tr '\\0' a; head -c 262144 /dev/zero | tr '\\0' e >&2",
            tid=1,
        ),
        timeout=30,
    )
    marker = "\n\x01[remSvc: output truncated at 262144 bytes]\x01\n"
    assert truncation_marker(262144) == marker
    assert reply.rc == 0
    assert reply.out == "a" * 262144 + marker
    assert reply.err == "e" * 262144  # exactly at the cap: nothing cut, no marker


def test_output_cap_keeps_draining_so_a_chatty_child_finishes(server_process):
    server = server_process(output_cap_bytes=1000)
    with grpc.insecure_channel(server.target) as channel:
        reply = pb_grpc.RemSvcStub(channel).RemCmd(
            pb.RemCmdMsg(cmd="head -c 20000000 /dev/zero | tr '\\0' x; echo done >&2", tid=1),
            timeout=60,
        )
    assert reply.rc == 0
    assert reply.out == "x" * 1000 + truncation_marker(1000)
    assert reply.err == "done\n"


def test_raised_output_cap_delivers_large_output(server_process):
    cap = 8 * 1024 * 1024
    server = server_process(output_cap_bytes=cap)
    with grpc.insecure_channel(
        server.target, options=[("grpc.max_receive_message_length", 64 << 20)]
    ) as channel:
        reply = pb_grpc.RemSvcStub(channel).RemCmd(
            pb.RemCmdMsg(cmd=f"head -c {cap + 10} /dev/zero | tr '\\0' y", tid=1), timeout=60
        )
    assert reply.out == "y" * cap + truncation_marker(cap)


def test_exit_by_signal_is_reported_like_a_shell(stub):
    reply = stub.RemCmd(pb.RemCmdMsg(cmd="kill -9 $$", tid=1), timeout=10)
    assert reply.rc == 128 + 9


def test_unknown_cmdtyp_gives_rc_1_with_a_clear_error(stub):
    reply = stub.RemCmd(pb.RemCmdMsg(cmd="echo x", cmdtyp=5, tid=1), timeout=10)
    assert reply.rc == 1
    assert "unsupported cmdtyp 5" in reply.err


def test_refusal_with_max_parallel_still_delivers_running_results(server_process):
    server = server_process(max_parallel=2, denylist={"no": "forbidden"})
    with grpc.insecure_channel(server.target) as channel:
        run = run_stream(
            pb_grpc.RemSvcStub(channel),
            [
                pb.RemCmdMsg(cmd="sleep 0.3; echo slow", tid=1),
                pb.RemCmdMsg(cmd="echo forbidden", tid=2),
            ],
        )
    assert [(r.tid, r.out) for r in run.responses] == [(1, "slow\n")]
    assert run.code == grpc.StatusCode.PERMISSION_DENIED


def ipv6_loopback_available() -> bool:
    try:
        with socket.socket(socket.AF_INET6) as probe:
            probe.bind(("::1", 0))
    except OSError:
        return False
    return True


@pytest.mark.skipif(not ipv6_loopback_available(), reason="no IPv6 loopback on this host")
def test_listens_on_ipv6_loopback(server_process):
    server = server_process(host="::1")
    assert server.target == f"[::1]:{server.port}"
    with grpc.insecure_channel(server.target) as channel:
        assert pb_grpc.RemSvcStub(channel).Ping(pb.PingMsg(seq=6), timeout=10).seq == 6


def test_output_of_a_background_job_that_ends_within_the_linger_is_kept(stub):
    # The shell exits first; the pipes close a moment later, when the job is done.
    reply = stub.RemCmd(pb.RemCmdMsg(cmd="(sleep 0.1; echo late) & echo early", tid=1), timeout=10)
    assert (reply.rc, reply.out, reply.err) == (0, "early\nlate\n", "")


def test_a_command_that_closes_its_pipes_early_is_still_waited_for(stub):
    # The pipes end long before the process does; its exit status must still arrive.
    cmd = "echo before; echo warn >&2; exec >/dev/null 2>&1; sleep 0.3; exit 4"
    reply = stub.RemCmd(pb.RemCmdMsg(cmd=cmd, tid=1), timeout=10)
    assert (reply.rc, reply.out, reply.err) == (4, "before\n", "warn\n")


def test_a_long_stream_gets_every_result_in_order(stub):
    # Many short commands back to back: each one's pipes, exit status and output stay
    # its own while descriptors and pids are reused.
    requests = [
        pb.RemCmdMsg(cmd=f"echo out{n}; echo err{n} >&2; exit {n % 3}", tid=n)
        for n in range(1, 301)
    ]
    run = run_stream(stub, requests)
    assert run.code == grpc.StatusCode.OK
    assert [(r.tid, r.rc, r.out, r.err) for r in run.responses] == [
        (n, n % 3, f"out{n}\n", f"err{n}\n") for n in range(1, 301)
    ]


@pytest.mark.parametrize("max_parallel", [1, 3])
def test_commands_that_cannot_start_still_answer_in_a_stream(server_process, max_parallel):
    # They never get a process: their result comes from the runner directly, and the
    # stream's next commands must still start after them.
    server = server_process(max_parallel=max_parallel)
    requests = [
        pb.RemCmdMsg(cmd="echo a", tid=1, cmdusr="no-such-user-here"),
        pb.RemCmdMsg(cmd="echo b", tid=2, cmdtyp=7),
        pb.RemCmdMsg(cmd="echo c", tid=3),
        pb.RemCmdMsg(cmd="echo d", tid=4, cmdusr="no-such-user-here"),
        pb.RemCmdMsg(cmd="echo e", tid=5),
    ]
    with grpc.insecure_channel(server.target) as channel:
        run = run_stream(pb_grpc.RemSvcStub(channel), requests)
    assert run.code == grpc.StatusCode.OK
    got = sorted((r.tid, r.rc, r.out, r.err.split(":")[0]) for r in run.responses)
    assert got == [
        (1, 1, "", "user not found"),
        (2, 1, "", "unsupported cmdtyp 7"),
        (3, 0, "c\n", ""),
        (4, 1, "", "user not found"),
        (5, 0, "e\n", ""),
    ]
