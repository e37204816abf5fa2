"""``remsvc run`` on several servers: --target repeated, --targets-file, the fan-out
options, output keyed by host, and the exit status of the whole run."""

from __future__ import annotations

import csv
import io
import json
import socket
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from remsvc_core.hostlist import RANGE_DASH

RunCli = Callable[..., subprocess.CompletedProcess[str]]
TOKEN = "s3cr3t-fleet-cli-token-2b9d"


@pytest.fixture
def closed_target() -> str:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return f"127.0.0.1:{sock.getsockname()[1]}"


@pytest.fixture
def two_servers(remsvc_server_factory: Any) -> list[str]:
    return [remsvc_server_factory().target, remsvc_server_factory().target]


def test_tls_and_token_options_apply_to_every_target(
    run_cli: RunCli, server_process: Callable[..., Any], tls_files: Any, tmp_path: Path
) -> None:
    secure = {
        "tls_enabled": True,
        "tls_cert": tls_files.server_cert,
        "tls_key": tls_files.server_key,
        "auth": {"ci": TOKEN},
    }
    first, second = server_process(**secure), server_process(**secure)
    token = tmp_path / "token"
    token.write_text(TOKEN, encoding="utf-8")
    # The certificate is for localhost; the second one comes as a URI, with a label.
    listed = tmp_path / "hosts"
    listed.write_text(f"db=remsvc://localhost:{second.port}?use_ssl=true\n", encoding="utf-8")
    proc = run_cli(
        "run", "--target", f"localhost:{first.port}", "--targets-file", str(listed),
        "--ca-cert", tls_files.ca_cert, "--token-file", str(token), "--output", "json",
        "echo one", "echo two",
    )  # fmt: skip

    assert proc.returncode == 0, proc.stderr
    assert TOKEN not in proc.stdout + proc.stderr
    document = json.loads(proc.stdout)
    assert document["ok"] is True
    assert [h["host"] for h in document["hosts"]] == [f"localhost:{first.port}", "db"]
    assert [h["state"] for h in document["hosts"]] == ["SUCCESS", "SUCCESS"]
    for host in document["hosts"]:
        assert [r["out"] for r in host["outcome"]["results"]] == ["one\n", "two\n"]
    assert "2 host(s), 2 command(s) each" in proc.stderr


def test_a_targets_file_with_an_error_budget(
    run_cli: RunCli, two_servers: list[str], closed_target: str, tmp_path: Path
) -> None:
    listed = tmp_path / "hosts.txt"
    listed.write_text(
        f"# the fleet\nweb1={two_servers[0]}\n\nweb2={closed_target}\n"
        f"web3 = {two_servers[1]}\nweb4={two_servers[1]}\n",
        encoding="utf-8",
    )
    proc = run_cli(
        "run", "--targets-file", str(listed), "--max-concurrency", "1", "--max-errors", "1",
        "--output", "json", "hostname",
    )  # fmt: skip

    assert proc.returncode == 1, proc.stderr
    document = json.loads(proc.stdout)
    states = {host["host"]: host["state"] for host in document["hosts"]}
    assert states == {"web1": "SUCCESS", "web2": "FAILED", "web3": "NOT_STARTED",
                      "web4": "NOT_STARTED"}  # fmt: skip
    assert document["failed_hosts"] == ["web2"]
    assert document["not_started"] == ["web3", "web4"]
    assert "2 host(s) not started because the error budget (max_errors=1) ran out" in proc.stderr
    assert f"web2 ({closed_target}): no result for tid(s) 1; stream ended with UNAVAILABLE" in (
        proc.stderr
    )


def test_csv_and_table_rows_are_keyed_by_host(run_cli: RunCli, two_servers: list[str]) -> None:
    targets = ["--target", f"a1={two_servers[0]}", "--target", f"a2={two_servers[1]}"]
    proc = run_cli("run", *targets, "--output", "csv", "echo x", "exit 4")

    assert proc.returncode == 1
    rows = list(csv.DictReader(io.StringIO(proc.stdout)))
    assert [(r["host"], r["tid"], r["rc"]) for r in rows] == [
        ("a1", "1", "0"), ("a1", "2", "4"), ("a2", "1", "0"), ("a2", "2", "4"),
    ]  # fmt: skip
    assert f"a1 ({two_servers[0]}): tid 2 rc=4 stderr: (empty)" in proc.stderr

    table = run_cli("run", *targets, "--output", "table", "echo x")
    assert table.returncode == 0, table.stderr
    assert table.stdout.splitlines()[0].split() == ["host", "tid", "rc", "out", "err"]
    assert table.stdout.splitlines()[1].split() == ["a1", "1", "0", "x"]


def test_handlers_see_every_host_and_grouped_writes_ranges(
    run_cli: RunCli, remsvc_server_factory: Any
) -> None:
    server = remsvc_server_factory()
    targets = [arg for i in range(1, 6) for arg in ("--target", f"web{i}={server.target}")]
    proc = run_cli("run", *targets, "--handler", "grouped", "--output", "csv", "uname -s")

    assert proc.returncode == 0, proc.stderr
    rows = list(csv.DictReader(io.StringIO(proc.stdout)))
    assert [(r["hosts"], r["host_count"], r["out"]) for r in rows] == [
        (f"web1{RANGE_DASH}web5", "5", "Linux\n")
    ]


def test_a_success_threshold_lets_some_hosts_fail(
    run_cli: RunCli, two_servers: list[str], closed_target: str
) -> None:
    targets = ["--target", two_servers[0], "--target", two_servers[1], "--target", closed_target]
    lenient = run_cli("run", *targets, "--success-threshold", "60%", "-o", "json", "true")
    strict = run_cli("run", *targets, "-o", "json", "true")

    assert lenient.returncode == 0, lenient.stderr
    assert json.loads(lenient.stdout)["failed_hosts"] == [closed_target]
    assert f"1 of 3 host(s) failed: {closed_target}" in lenient.stderr  # said, not hidden
    assert strict.returncode == 1


def test_follow_lines_carry_the_host(run_cli: RunCli, two_servers: list[str]) -> None:
    proc = run_cli(
        "run", "--target", f"left={two_servers[0]}", "--target", f"right={two_servers[1]}",
        "--follow", "--output", "json", "echo live",
    )  # fmt: skip

    assert proc.returncode == 0, proc.stderr
    assert "left [tid 1] live" in proc.stderr.splitlines()
    assert "right [tid 1] live" in proc.stderr.splitlines()
    assert any(line.startswith("remsvc: [2/2] ") for line in proc.stderr.splitlines())


def test_no_host_reachable_is_a_connection_failure(run_cli: RunCli, closed_target: str) -> None:
    proc = run_cli("run", "--target", f"x={closed_target}", "--max-concurrency", "3", "true")

    assert proc.returncode == 3
    assert "no host could be reached" in proc.stderr


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (
            ["--max-errors", "0.5"],
            "--max-errors='0.5' looks like a fraction of the hosts; write '50%'",
        ),
        (["--max-concurrency", "0"], "max_concurrency must be a whole number"),
        (["--success-threshold", "3"], "the run has only 2 host(s)"),
        (["--target", "a=127.0.0.1:1"], "both labelled 'a'"),
        (["--targets-file", "/nonexistent/hosts"], "cannot read --targets-file"),
        (["--targets-file", "/dev/null"], "lists no server"),
        (["--target", "c = d e:1"], "--target 'c = d e:1': 'd e:1' is not a server"),
    ],
)
def test_bad_fan_out_options_are_usage_errors(
    run_cli: RunCli, arguments: list[str], message: str
) -> None:
    proc = run_cli("run", "--target", "a=127.0.0.1:1", "--target", "b=127.0.0.2:1", *arguments,
                   "true")  # fmt: skip
    assert proc.returncode == 2, proc.stderr
    assert message in proc.stderr
    assert "Traceback" not in proc.stderr


def test_a_token_in_a_conn_uri_is_refused(run_cli: RunCli) -> None:
    proc = run_cli("run", "--conn", "remsvc://h:1", "--conn", "remsvc://g:1?bearer_token=x", "true")
    assert proc.returncode == 2
    assert "--conn: the URI contains bearer_token; remove it" in proc.stderr


def test_stdin_cannot_be_both_commands_and_targets(run_cli: RunCli) -> None:
    proc = run_cli("run", "--targets-file", "-", "--file", "-", input="true\n")
    assert proc.returncode == 2
    assert "cannot both read stdin" in proc.stderr
