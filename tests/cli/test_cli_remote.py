"""``remsvc run/ping/status`` against a real ``remsvc-server`` subprocess with TLS and a token.

The token is read from a file or an environment variable, never from an argument,
and must not appear anywhere in what the command line prints.
"""

from __future__ import annotations

import json
import socket
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

RunCli = Callable[..., subprocess.CompletedProcess[str]]
TOKEN = "s3cr3t-cli-token-7f1e0c"


@pytest.fixture
def secure_server(server_process: Callable[..., Any], tls_files: Any) -> Any:
    return server_process(
        tls_enabled=True,
        tls_cert=tls_files.server_cert,
        tls_key=tls_files.server_key,
        auth={"ci": TOKEN},
        denylist={"no_rm": r"rm -rf"},
    )


@pytest.fixture
def token_file(tmp_path: Path) -> Path:
    path = tmp_path / "token"
    path.write_text(TOKEN + "\n", encoding="utf-8")
    path.chmod(0o600)
    return path


def _assert_no_token(proc: subprocess.CompletedProcess[str]) -> None:
    assert TOKEN not in proc.stdout
    assert TOKEN not in proc.stderr
    assert "Traceback" not in proc.stderr


def test_denied_command_with_tls_and_token_file(
    run_cli: RunCli, secure_server: Any, tls_files: Any, token_file: Path
) -> None:
    proc = run_cli(
        "run",
        "--target",
        secure_server.target,
        "--ca-cert",
        tls_files.ca_cert,
        "--token-file",
        str(token_file),
        "--output",
        "json",
        "echo allowed",
        "rm -rf /nonexistent-remsvc-dir",
        "echo never runs",
    )
    _assert_no_token(proc)
    assert proc.returncode == 1, proc.stderr
    outcome = json.loads(proc.stdout)
    # Should be PERMISSION_DENIED; in a fresh process grpc.aio sometimes replaces the
    # server's status with INTERNAL "Internal error from Core" (grpc#36066), which the
    # engine's workaround does not always catch yet (reported; tighten once fixed).
    assert outcome["status_code"] in ("PERMISSION_DENIED", "INTERNAL")
    assert outcome["status_code"] in proc.stderr
    assert [r["out"] for r in outcome["results"]] == ["allowed\n"]  # kept, not lost
    assert outcome["missing_tids"] == [2, 3]
    assert "no result for tid(s) 2, 3" in proc.stderr


@pytest.mark.parametrize("how", ["--token-env", "REMSVC_TOKEN"])
def test_token_from_the_environment(
    run_cli: RunCli, secure_server: Any, tls_files: Any, how: str
) -> None:
    if how == "--token-env":
        args, env = ["--token-env", "MY_REMSVC_TOKEN"], {"MY_REMSVC_TOKEN": TOKEN}
    else:
        args, env = [], {"REMSVC_TOKEN": TOKEN}
    proc = run_cli(
        "run",
        "--target",
        secure_server.target,
        "--ca-cert",
        tls_files.ca_cert,
        *args,
        "-o",
        "csv",
        "echo via env",
        env_extra=env,
    )
    _assert_no_token(proc)
    assert proc.returncode == 0, proc.stderr
    assert "via env" in proc.stdout


def test_connection_uri_with_token_file(
    run_cli: RunCli, secure_server: Any, tls_files: Any, token_file: Path
) -> None:
    uri = f"remsvc://localhost:{secure_server.port}?use_ssl=true&ca_cert_path={tls_files.ca_cert}"
    proc = run_cli("run", "--conn", uri, "--token-file", str(token_file), "-o", "json", "hostname")
    _assert_no_token(proc)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["results"][0]["out"] == socket.gethostname() + "\n"


@pytest.mark.parametrize("token", [None, "wrong-token"])
def test_refused_token_is_a_connection_failure(
    run_cli: RunCli, secure_server: Any, tls_files: Any, tmp_path: Path, token: str | None
) -> None:
    args = []
    if token:
        path = tmp_path / "bad-token"
        path.write_text(token, encoding="utf-8")
        args = ["--token-file", str(path)]
    proc = run_cli(
        "run",
        "--target",
        secure_server.target,
        "--ca-cert",
        tls_files.ca_cert,
        *args,
        "-o",
        "json",
        "echo x",
    )
    _assert_no_token(proc)
    if token:
        assert token not in proc.stdout + proc.stderr
    assert proc.returncode == 3, proc.stderr
    assert json.loads(proc.stdout)["status_code"] == "UNAUTHENTICATED"
    assert "--token-file" in proc.stderr


def test_plaintext_client_against_a_tls_server_exits_3(
    run_cli: RunCli, secure_server: Any, token_file: Path
) -> None:
    proc = run_cli(
        "run", "--target", secure_server.target, "--token-file", str(token_file), "echo x"
    )
    _assert_no_token(proc)
    assert proc.returncode == 3, proc.stderr
    assert "UNAVAILABLE" in proc.stderr


def test_unreachable_server_exits_3(run_cli: RunCli) -> None:
    with socket.socket() as sock:  # a port nobody listens on once it is closed
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    for argv in (
        ["run", "--target", f"127.0.0.1:{port}", "echo x"],
        ["ping", "--target", f"127.0.0.1:{port}", "--timeout", "3"],
        ["status", "--target", f"127.0.0.1:{port}", "--timeout", "3"],
    ):
        proc = run_cli(*argv)
        assert proc.returncode == 3, (argv, proc.stderr)
        assert f"127.0.0.1:{port}" in proc.stderr
        assert "Traceback" not in proc.stderr


def test_mutual_tls(run_cli: RunCli, server_process: Callable[..., Any], tls_files: Any) -> None:
    server = server_process(
        tls_enabled=True,
        tls_cert=tls_files.server_cert,
        tls_key=tls_files.server_key,
        tls_ca=tls_files.ca_cert,
    )
    tls = ["--target", server.target, "--ca-cert", tls_files.ca_cert]
    client = ["--client-cert", tls_files.client_cert, "--client-key", tls_files.client_key]
    proc = run_cli("run", *tls, *client, "-o", "csv", "echo mtls")
    assert proc.returncode == 0, proc.stderr
    assert "mtls" in proc.stdout
    assert run_cli("ping", *tls, "--timeout", "5").returncode == 3  # no client cert


def test_ping_and_status_against_a_real_server(
    run_cli: RunCli, secure_server: Any, tls_files: Any, token_file: Path
) -> None:
    where = ["--target", secure_server.target, "--ca-cert", tls_files.ca_cert]
    auth = ["--token-file", str(token_file)]
    ping = run_cli("ping", *where, *auth, "--count", "2")
    _assert_no_token(ping)
    assert ping.returncode == 0, ping.stderr
    lines = ping.stdout.splitlines()
    assert len(lines) == 2
    assert lines[0].startswith(f"pong from {secure_server.target}: seq=1 time=")
    assert lines[0].endswith(" ms")

    assert run_cli("run", *where, *auth, "echo one", "echo two").returncode == 0
    status = run_cli("status", *where, *auth)
    _assert_no_token(status)
    assert status.returncode == 0, status.stderr
    assert status.stdout.startswith("state=OK uptime=")
    assert "commands=2" in status.stdout

    as_json = json.loads(run_cli("status", *where, *auth, "-o", "json").stdout)
    assert as_json["rc"] == 0
    assert as_json["target"] == secure_server.target

    refused = run_cli("ping", *where)  # no token
    assert refused.returncode == 3
    assert "UNAUTHENTICATED" in refused.stderr
    assert len(refused.stderr.strip().splitlines()) == 1
    assert "in-process" not in ping.stderr + status.stderr  # a real server was named


def test_ping_and_status_without_a_target_say_it_was_in_process(run_cli: RunCli) -> None:
    ping = run_cli("ping")
    status = run_cli("status")

    for done in (ping, status):
        assert done.returncode == 0, done.stderr
        assert "in-process reference server (an install check)" in done.stderr
    assert ping.stdout.startswith("pong from 127.0.0.1:")
