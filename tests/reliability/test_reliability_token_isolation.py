"""Issue 12.1: a command cannot learn another identity's token from /proc.

Any authenticated caller could ``cat /proc/$PPID/environ`` and read every identity's
token: the tokens stayed in the server's environment, and commands run as the
server's own user may read its /proc files. Here the real server runs as an
unprivileged user (``nobody``, started through ``setpriv`` as the documented systemd
unit starts it as ``remsvc``), its tokens given in its environment as systemd's
``EnvironmentFile`` gives them. Identity ``alpha`` runs a command that reads
everything it can under /proc (``proc_secret_scan.py``: every process's files,
threads, memory, open files and working directory) looking for both identities'
tokens. It must find neither, while it does find a token planted in an ordinary
process of the same user (the positive control: the scan works).
"""

from __future__ import annotations

import json
import os
import pwd
import secrets
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from support.server_process import ServerProcess, launch_server

from remsvc_core.wire import pb, pb_grpc

pytestmark = [pytest.mark.reliability, pytest.mark.slow, pytest.mark.timeout(300)]

SCANNER = Path(__file__).with_name("proc_secret_scan.py")
USER = "nobody"


def unprivileged_prefix() -> list[str]:
    setpriv = shutil.which("setpriv")
    if not sys.platform.startswith("linux") or os.geteuid() != 0 or setpriv is None:
        pytest.skip("needs Linux, root and util-linux setpriv to start a server as another user")
    try:
        entry = pwd.getpwnam(USER)
    except KeyError:
        pytest.skip(f"no user {USER!r} on this machine")
    return [
        setpriv,
        f"--reuid={entry.pw_uid}",
        f"--regid={entry.pw_gid}",
        "--clear-groups",
        "--inh-caps=-all",
        "--",
    ]


@pytest.fixture
def workdir() -> Iterator[Path]:
    """A directory the unprivileged server can use (pytest's tmp_path is root's alone)."""
    path = Path(tempfile.mkdtemp(prefix="remsvc-isolation-"))
    entry = pwd.getpwnam(USER)
    os.chown(path, entry.pw_uid, entry.pw_gid)
    path.chmod(0o755)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def planted(workdir: Path) -> Iterator[str]:
    """A token in the environment (and so the memory) of a process of the same user."""
    token = "tok-planted-" + secrets.token_hex(16)
    process = subprocess.Popen(
        [*unprivileged_prefix(), "sleep", "300"],
        env={"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "REMSVC_PLANTED": token},
        stdin=subprocess.DEVNULL,
        cwd=workdir,
    )
    try:
        yield token
    finally:
        process.kill()
        process.wait(timeout=10)


@pytest.fixture
def unprivileged_server(workdir: Path) -> Iterator[tuple[ServerProcess, dict[str, str]]]:
    tokens = {name: f"tok-{name}-" + secrets.token_hex(16) for name in ("alpha", "beta")}
    config = (
        "[server]\ncmd_timeout_ms = 280000\n\n"
        "[auth]\nalpha = ${REMSVC_TOKEN_ALPHA}\nbeta = ${REMSVC_TOKEN_BETA}\n"
    )
    server = launch_server(
        workdir / "server",
        config,
        prefix=unprivileged_prefix(),
        env={
            "HOME": str(workdir),
            "REMSVC_TOKEN_ALPHA": tokens["alpha"],
            "REMSVC_TOKEN_BETA": tokens["beta"],
        },
    )
    try:
        yield server, tokens
    finally:
        server.close()


@pytest.fixture(autouse=True)
def _server_dir_for_nobody(workdir: Path) -> None:
    server_dir = workdir / "server"
    server_dir.mkdir()
    entry = pwd.getpwnam(USER)
    os.chown(server_dir, entry.pw_uid, entry.pw_gid)


def test_a_command_finds_no_token_of_any_identity_under_proc(unprivileged_server, planted, figures):
    server, tokens = unprivileged_server
    # The scanner needs the standard library only; this test's own interpreter may
    # live where the unprivileged user cannot reach it.
    python = shutil.which("python3", path="/usr/bin:/bin")
    if python is None:
        pytest.skip("no system python3 for the unprivileged scanner")
    wanted = {**tokens, "planted": planted}
    arguments = " ".join(f"{label}={token.encode().hex()}" for label, token in wanted.items())
    with grpc.insecure_channel(server.target) as channel:
        reply = pb_grpc.RemSvcStub(channel).RemCmd(
            pb.RemCmdMsg(cmd=f"{python} -I {SCANNER} {arguments}", tid=1),
            metadata=[("authorization", f"Bearer {tokens['alpha']}")],
            timeout=290,
        )
    assert reply.rc == 0, reply.err
    report = json.loads(reply.out)
    hits, counts = report["hits"], report["counts"]
    for label in tokens:
        figures.token_scan(f"/proc as another identity ({label})", sum(hits[label].values()))
    figures.tried("/proc files read by a command", counts["files"])
    figures.note(
        f"/proc scan as identity alpha: {counts['pids']} processes, {counts['files']:,} files, "
        f"{counts['mem_bytes'] >> 20} MiB of memory; tokens found: alpha "
        f"{sum(hits['alpha'].values())}, beta {sum(hits['beta'].values())}; planted "
        f"control {hits['planted']}"
    )
    assert report["complete"], counts
    # The positive control: the scan reads environments and memory where it may.
    assert hits["planted"].get("environ", 0) >= 1, hits["planted"]
    assert hits["planted"].get("mem", 0) >= 1, hits["planted"]
    assert hits["alpha"] == {}, hits
    assert hits["beta"] == {}, hits

    # As root (who may read anything), the server's environment holds no token
    # either: the variables were removed, and the bytes /proc shows were zeroed.
    environ = Path(f"/proc/{server.pid}/environ").read_bytes()
    assert not any(token.encode() in environ for token in tokens.values())
    assert b"REMSVC_TOKEN_ALPHA" not in environ
    # Not dumpable: the kernel shows the server's /proc files as root's.
    assert os.stat(f"/proc/{server.pid}/environ").st_uid == 0
    assert (
        Path(f"/proc/{server.pid}/status").read_text().count(f"Uid:\t{pwd.getpwnam(USER).pw_uid}")
    )
