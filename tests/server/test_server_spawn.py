"""Starting a child on its own: argv, user, environment snapshot, session, stdin, pipes."""

from __future__ import annotations

import os
import pwd
import sys

import pytest

from remsvc_core.server.identity import UserIdentity, resolve_user
from remsvc_core.server.killing import RUN_TAG_VAR
from remsvc_core.server.outcome import CannotStart
from remsvc_core.server.spawn import CommandEnvironment, Spawner, command_argv


def test_commands_get_the_servers_environment_minus_hidden_variables():
    source = {"PATH": "/usr/bin", "TOKEN_VAR": "secret", "COLOUR": "blue"}
    environment = CommandEnvironment({"TOKEN_VAR"}, source)
    env = environment.for_command("tag-1", None)
    assert env == {"PATH": "/usr/bin", "COLOUR": "blue", RUN_TAG_VAR: "tag-1"}
    env["COLOUR"] = "changed by one command"
    assert environment.for_command("tag-2", None)["COLOUR"] == "blue"  # a fresh copy each


def test_the_environment_is_a_snapshot_taken_once(monkeypatch):
    # Documented choice: what the server changes in os.environ after start is not seen.
    monkeypatch.setenv("REMSVC_TEST_BEFORE", "1")
    environment = CommandEnvironment(())
    monkeypatch.setenv("REMSVC_TEST_AFTER", "1")
    monkeypatch.delenv("REMSVC_TEST_BEFORE")
    env = environment.for_command("t", None)
    assert env["REMSVC_TEST_BEFORE"] == "1"
    assert "REMSVC_TEST_AFTER" not in env


def test_a_command_run_as_another_user_gets_that_users_home_and_name():
    user = UserIdentity("alice", 1234, 1234, [1234], "/home/alice")
    env = CommandEnvironment((), {"HOME": "/root", "USER": "root", "X": "1"}).for_command("t", user)
    assert env == {"HOME": "/home/alice", "USER": "alice", "LOGNAME": "alice", "X": "1"} | {
        RUN_TAG_VAR: "t"
    }


def test_argv_for_each_command_type():
    assert command_argv("echo hi", 0) == ["/bin/sh", "-c", "echo hi"]
    with pytest.raises(CannotStart, match="unsupported cmdtyp 7: use 0") as caught:
        command_argv("x", 7)
    assert caught.value.result().rc == 1


def test_users_that_need_no_switch_or_do_not_exist():
    assert resolve_user("") is None
    assert resolve_user(pwd.getpwuid(os.geteuid()).pw_name) is None
    for name in ("no-such-user-remsvc", "bad\x00name"):
        with pytest.raises(CannotStart) as caught:
            resolve_user(name)
        assert (caught.value.rc, str(caught.value)) == (1, f"user not found: {name}")


@pytest.mark.skipif(os.geteuid() != 0, reason="switching users needs root")
def test_another_user_resolves_to_its_ids():
    nobody = pwd.getpwnam("nobody")
    identity = resolve_user("nobody")
    assert identity is not None
    assert (identity.uid, identity.gid, identity.home) == (
        nobody.pw_uid,
        nobody.pw_gid,
        nobody.pw_dir,
    )


def test_a_nul_in_the_command_cannot_start():
    spawner = Spawner(CommandEnvironment(()), posix_spawn=False)
    with pytest.raises(CannotStart) as caught:
        spawner.spawn("echo a\x00b", 0, "")
    assert caught.value.result().rc == 127
    assert "NUL" in caught.value.result().err


def _read_all(fd: int) -> bytes:
    chunks = []
    while chunk := os.read(fd, 65536):
        chunks.append(chunk)
    os.close(fd)
    return b"".join(chunks)


@pytest.mark.parametrize("posix_spawn", [True, False], ids=["posix_spawn", "Popen"])
def test_a_child_gets_its_own_session_empty_stdin_its_tag_and_two_pipes(posix_spawn):
    # posix_spawn is safe here only because the test starts nothing else meanwhile; the
    # server uses it only when every descriptor is close-on-exec (see spawn.py).
    spawner = Spawner(CommandEnvironment(()), posix_spawn=posix_spawn)
    probe = (
        "import os, sys; print(os.getsid(0) == os.getpid(), os.read(0, 1), "
        f"os.environ[{RUN_TAG_VAR!r}]); print('to stderr', file=sys.stderr)"
    )
    spawned = spawner.spawn(f'exec {sys.executable} -I -S -c "{probe}"', 0, "")
    out, err = _read_all(spawned.out_fd), _read_all(spawned.err_fd)
    assert spawned.child.wait() == 0
    assert out.decode() == f"True b'' {spawned.tag}\n"
    assert err.decode() == "to stderr\n"
    second = spawner.spawn("true", 0, "")
    assert (_read_all(second.out_fd), _read_all(second.err_fd)) == (b"", b"")
    assert second.child.wait() == 0
    assert second.tag != spawned.tag  # every command's processes carry their own tag


def test_a_user_switch_that_fails_exits_125():
    if os.geteuid() == 0:
        pytest.skip("root can switch to any user")
    spawner = Spawner(CommandEnvironment(()), posix_spawn=False)
    other = next(u for u in pwd.getpwall() if u.pw_uid != os.geteuid())
    spawned = spawner.spawn("echo never", 0, other.pw_name)
    out, err = _read_all(spawned.out_fd), _read_all(spawned.err_fd)
    assert spawned.child.wait() == 125, (out, err)
    assert f"cannot switch to user {other.pw_name}" in err.decode()
