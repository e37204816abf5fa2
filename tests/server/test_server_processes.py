"""Child processes: timeouts, cancellation, leftovers, shutdown drain, users, PowerShell."""

from __future__ import annotations

import os
import shutil
import signal
import threading

import grpc
import pytest
from server_waits import wait_for_text
from support.server_process import run_stream, wait_for_pid_file, wait_until_gone

from remsvc_core.wire import pb, pb_grpc

pytestmark = pytest.mark.skipif(not os.path.isdir("/proc"), reason="checks processes through /proc")


def stub_for(server):
    channel = grpc.insecure_channel(server.target)
    return channel, pb_grpc.RemSvcStub(channel)


def test_timeout_kills_the_whole_process_group_and_discards_output(server_process, scratch):
    server = server_process(cmd_timeout_ms=700)
    grandchild = scratch / "grandchild"
    child = scratch / "child"
    # A shell whose child starts a grandchild: all three must die at the timeout.
    cmd = f"echo partial; sh -c 'sleep 60 & echo $! > {grandchild}; wait' & echo $! > {child}; wait"
    channel, stub = stub_for(server)
    with channel:
        run = run_stream(stub, [pb.RemCmdMsg(cmd=cmd, tid=1), pb.RemCmdMsg(cmd="echo next", tid=2)])
    assert run.code == grpc.StatusCode.OK
    assert [(r.tid, r.rc, r.out, r.err) for r in run.responses] == [
        (1, 1, "", "process timed out"),
        (2, 0, "next\n", ""),
    ]
    for pid_file in (child, grandchild):
        pid = wait_for_pid_file(pid_file)
        assert wait_until_gone(pid), f"pid {pid} from {pid_file.name} survived the timeout"


def test_background_leftovers_of_a_finished_command_are_killed(stub, scratch):
    # Decided behaviour: once the main child exits, leftovers get a short linger for
    # the pipes, then the group is killed; the response is not held hostage.
    leftover = scratch / "leftover"
    quiet = scratch / "quiet"
    cmd = (
        f"sleep 60 & echo $! > {leftover}; sleep 60 >/dev/null 2>&1 & echo $! > {quiet}; echo done"
    )
    reply = stub.RemCmd(pb.RemCmdMsg(cmd=cmd, tid=1), timeout=20)
    assert (reply.rc, reply.out) == (0, "done\n")
    assert wait_until_gone(wait_for_pid_file(leftover))
    assert wait_until_gone(wait_for_pid_file(quiet))


def test_a_process_that_left_the_group_cannot_hold_the_response(stub, scratch):
    escaped = scratch / "escaped"
    cmd = f"setsid sh -c 'echo $$ > {escaped}; exec sleep 60' & echo started"
    try:
        reply = stub.RemCmd(pb.RemCmdMsg(cmd=cmd, tid=1), timeout=20)
        assert (reply.rc, reply.out) == (0, "started\n")
    finally:
        # setsid put it beyond the server's reach on purpose; clean up after the test.
        pid = wait_for_pid_file(escaped)
        os.kill(pid, signal.SIGKILL)


def test_client_cancel_kills_the_running_command(stub, scratch):
    started = scratch / "started"
    grandchild = scratch / "grandchild"
    cmd = f"sleep 60 & echo $! > {grandchild}; echo $$ > {started}; wait"
    call = stub.RemCmdStrm(iter([pb.RemCmdMsg(cmd=cmd, tid=1)]), timeout=30)
    pid = wait_for_pid_file(started)
    sleeper = wait_for_pid_file(grandchild)
    call.cancel()
    assert wait_until_gone(pid)
    assert wait_until_gone(sleeper)
    with pytest.raises(grpc.RpcError) as caught:
        list(call)
    assert caught.value.code() == grpc.StatusCode.CANCELLED


def test_deadline_kills_the_running_command(stub, scratch):
    started = scratch / "started"
    with pytest.raises(grpc.RpcError) as caught:
        stub.RemCmd(pb.RemCmdMsg(cmd=f"echo $$ > {started}; exec sleep 60", tid=1), timeout=2.0)
    assert caught.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    assert wait_until_gone(wait_for_pid_file(started))


def test_sigterm_drains_a_running_command_then_exits(server_process, scratch):
    server = server_process(drain_grace_ms=10_000)
    started = scratch / "started"
    release = scratch / "release"
    late = scratch / "late-ran"
    # Runs until the test releases it, bounded at ~10 s.
    cmd = (
        f"echo $$ > {started}; i=0; while [ ! -e {release} ] && [ $i -lt 200 ]; "
        "do sleep 0.05; i=$((i+1)); done; echo finished"
    )
    draining = threading.Event()

    def requests():
        yield pb.RemCmdMsg(cmd=cmd, tid=1)
        # A command sent while the server drains must not start.
        if draining.wait(timeout=20):
            yield pb.RemCmdMsg(cmd=f"touch {late}", tid=2)

    channel, stub = stub_for(server)
    outcome: dict[str, object] = {}

    def stream() -> None:
        outcome["run"] = run_stream(stub, requests())

    with channel:
        reader = threading.Thread(target=stream)
        reader.start()
        pid = wait_for_pid_file(started)
        server.terminate()
        assert "draining running commands" in wait_for_text(server.log_text, "draining")
        # Draining: the server is still up and waiting for the command.
        assert server.returncode is None
        draining.set()
        release.touch()
        reader.join(timeout=30)
        assert not reader.is_alive()
    run = outcome["run"]
    assert [(r.tid, r.rc, r.out) for r in run.responses] == [(1, 0, "finished\n")]
    assert (run.code, run.details) == (grpc.StatusCode.UNAVAILABLE, "server is shutting down")
    assert server.wait(timeout=20) == 0
    assert wait_until_gone(pid)
    assert not late.exists()


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_shutdown_kills_commands_still_running_after_the_grace(server_process, scratch, signum):
    server = server_process(drain_grace_ms=300)
    started = scratch / "started"
    grandchild = scratch / "grandchild"
    cmd = f"sleep 60 & echo $! > {grandchild}; echo $$ > {started}; wait"
    channel, stub = stub_for(server)
    with channel:
        call = stub.RemCmdStrm(iter([pb.RemCmdMsg(cmd=cmd, tid=1)]), timeout=30)
        pid = wait_for_pid_file(started)
        sleeper = wait_for_pid_file(grandchild)
        server.popen.send_signal(signum)
        assert server.wait(timeout=20) == 0
        with pytest.raises(grpc.RpcError):
            list(call)
    assert wait_until_gone(pid)
    assert wait_until_gone(sleeper)
    assert "draining running commands for up to 0.3s" in server.log_text()


def test_cmdusr_drops_to_that_user(stub):
    if os.geteuid() != 0:
        pytest.skip("dropping to another user needs root")
    reply = stub.RemCmd(
        pb.RemCmdMsg(cmd="id -u; id -g; echo $HOME", cmdusr="nobody", tid=1), timeout=10
    )
    import pwd

    entry = pwd.getpwnam("nobody")
    assert reply.rc == 0, reply.err
    assert reply.out == f"{entry.pw_uid}\n{entry.pw_gid}\n{entry.pw_dir}\n"


def test_cmdusr_unknown_user(stub):
    reply = stub.RemCmd(pb.RemCmdMsg(cmd="id -u", cmdusr="no-such-user-here", tid=1), timeout=10)
    assert (reply.rc, reply.out, reply.err) == (1, "", "user not found: no-such-user-here")


def test_cmdusr_failed_drop_exits_125(server_process):
    setpriv = shutil.which("setpriv")
    if os.geteuid() != 0 or setpriv is None:
        pytest.skip("needs root and util-linux setpriv to start a server that cannot change user")
    # Root without CAP_SETUID/CAP_SETGID: the drop fails in the child, as it would for a
    # server that was never privileged.
    server = server_process(prefix=[setpriv, "--bounding-set", "-setuid,-setgid", "--"])
    channel, stub = stub_for(server)
    with channel:
        reply = stub.RemCmd(pb.RemCmdMsg(cmd="echo ran", cmdusr="nobody", tid=1), timeout=10)
        as_self = stub.RemCmd(pb.RemCmdMsg(cmd="id -u", cmdusr="root", tid=2), timeout=10)
    assert reply.rc == 125
    assert reply.err.startswith("cannot switch to user nobody: ")
    assert reply.out == ""
    assert (as_self.rc, as_self.out) == (0, "0\n")  # "dropping" to the server's own user is a no-op


def test_pwsh_missing_gives_rc_1_with_a_clear_error(server_process, tmp_path):
    empty_bin = tmp_path / "bin"
    empty_bin.mkdir()
    if shutil.which("pwsh", path=str(empty_bin)):  # pragma: no cover - cannot happen
        pytest.fail("pwsh found in an empty directory")
    server = server_process(env={"PATH": str(empty_bin)})
    channel, stub = stub_for(server)
    with channel:
        reply = stub.RemCmd(pb.RemCmdMsg(cmd="Get-Date", cmdtyp=1, tid=3), timeout=10)
    assert (reply.tid, reply.rc, reply.out) == (3, 1, "")
    assert "pwsh not found" in reply.err


@pytest.mark.skipif(shutil.which("pwsh") is None, reason="PowerShell (pwsh) is not installed")
def test_pwsh_runs_powershell(stub):  # pragma: no cover - only where pwsh exists
    reply = stub.RemCmd(pb.RemCmdMsg(cmd="Write-Output (1 + 2)", cmdtyp=1, tid=1), timeout=60)
    assert (reply.rc, reply.out.strip()) == (0, "3")


def test_commands_inherit_no_descriptor_the_server_was_started_with(server_process):
    # Started with descriptor 7 open and inheritable, as a careless parent could leave
    # it: the server must not hand it on to commands (a background job holding a
    # parent's pipe would keep that parent waiting for EOF forever).
    server = server_process(prefix=["/bin/sh", "-c", 'exec 7</dev/null; exec "$@"', "sh"])
    assert os.path.exists(f"/proc/{server.pid}/fd/7")  # the server did inherit it
    listing = "ls /proc/$$/fd"
    requests = [pb.RemCmdMsg(cmd=listing, tid=2)]
    if os.geteuid() == 0:  # also through the helper that switches user
        requests.append(pb.RemCmdMsg(cmd=listing, tid=3, cmdusr="nobody"))
    channel, stub = stub_for(server)
    with channel:
        reply = stub.RemCmd(pb.RemCmdMsg(cmd=listing, tid=1), timeout=10)
        run = run_stream(stub, requests)
    assert (reply.rc, reply.out.split(), reply.err) == (0, ["0", "1", "2"], "")
    assert [(r.rc, r.out.split(), r.err) for r in run.responses] == [
        (0, ["0", "1", "2"], "") for _ in requests
    ]


def test_commands_get_default_sigpipe(stub):
    # Python ignores SIGPIPE, and an ignored signal stays ignored across exec: without
    # restoring it, `yes` would see EPIPE and complain instead of dying quietly.
    reply = stub.RemCmd(pb.RemCmdMsg(cmd="yes | head -n 1", tid=1), timeout=10)
    assert (reply.rc, reply.out, reply.err) == (0, "y\n", "")


def test_client_cancel_also_drops_the_command_waiting_for_a_slot(stub, scratch):
    started = scratch / "started"
    never = scratch / "never"
    requests = [
        pb.RemCmdMsg(cmd=f"echo $$ > {started}; exec sleep 60", tid=1),
        pb.RemCmdMsg(cmd=f"touch {never}", tid=2),  # read, waiting for the slot
    ]
    call = stub.RemCmdStrm(iter(requests), timeout=30)
    pid = wait_for_pid_file(started)
    call.cancel()
    assert wait_until_gone(pid)
    with pytest.raises(grpc.RpcError) as caught:
        list(call)
    assert caught.value.code() == grpc.StatusCode.CANCELLED
    assert not never.exists()
