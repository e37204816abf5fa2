"""``remsvc run --batch-key``, ``--follow``, ``--output-dir``, ``--usage``; ``remsvc cancel``
and ``remsvc batch``: the real command line against a real server that keeps batches."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.timeout(240)


@pytest.fixture
def kept_server(server_process: Callable[..., Any], tmp_path: Path) -> Any:
    return server_process(batch_state_dir=str(tmp_path / "batches"), output_cap_bytes=64 << 20)


def _lines(path: Path) -> list[str]:
    return path.read_text().split() if path.exists() else []


def test_a_crashed_run_is_re_attached_by_running_it_again(
    kept_server: Any, tmp_path: Path, cli_env: dict[str, str], run_cli: Any
) -> None:
    log = tmp_path / "ran.log"
    commands = [f"echo one >> {log}; echo one", f"sleep 2; echo two >> {log}; echo two"]
    args = ["run", "--target", kept_server.target, "--batch-key", "cli:crash", *commands]
    running = subprocess.Popen(
        [sys.executable, "-m", "remsvc_core.cli", *args],
        env=cli_env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 60
    while _lines(log) != ["one"] and time.monotonic() < deadline:  # bounded
        time.sleep(0.05)
    running.send_signal(signal.SIGINT)  # the script is interrupted mid-batch
    _, stderr = running.communicate(timeout=60)
    assert "run the same command again to re-attach" in stderr

    again = run_cli(*args)
    document = json.loads(again.stdout)
    assert again.returncode == 0, again.stderr
    assert [r["out"] for r in document["results"]] == ["one\n", "two\n"]
    assert document["results"][0]["replayed"] is True
    assert _lines(log) == ["one", "two"]  # nothing ran twice

    shown = run_cli("batch", "--target", kept_server.target, "--batch-key", "cli:crash")
    assert shown.returncode == 0, shown.stderr
    assert shown.stdout.startswith("batch cli:crash: finished; 2 command(s) finished")


def test_cancel_kills_a_kept_batch(
    kept_server: Any, tmp_path: Path, cli_env: dict[str, str], run_cli: Any
) -> None:
    pidfile = tmp_path / "pid"
    args = [
        "run", "--target", kept_server.target, "--batch-key", "cli:cancel",
        f"echo $$ > {pidfile}; exec sleep 60",
    ]  # fmt: skip
    running = subprocess.Popen(
        [sys.executable, "-m", "remsvc_core.cli", *args],
        env=cli_env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 60
    while not (pidfile.exists() and pidfile.read_text().strip()) and time.monotonic() < deadline:
        time.sleep(0.05)
    running.send_signal(signal.SIGINT)
    running.wait(timeout=60)
    pid = int(pidfile.read_text())
    assert Path(f"/proc/{pid}").exists()  # the batch goes on without its client

    cancelled = run_cli("cancel", "--target", kept_server.target, "--batch-key", "cli:cancel")
    assert cancelled.returncode == 0, cancelled.stderr
    assert "cancelled" in cancelled.stdout
    deadline = time.monotonic() + 10
    while Path(f"/proc/{pid}").exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not Path(f"/proc/{pid}").exists()


def test_cancel_needs_a_server(run_cli: Any) -> None:
    result = run_cli("cancel", "--batch-key", "k")
    assert result.returncode == 2
    assert "needs --target" in result.stderr


def test_follow_prints_lines_as_they_are_printed(
    kept_server: Any, tmp_path: Path, cli_env: dict[str, str]
) -> None:
    stamps = tmp_path / "printed-at"
    ticker = f"for i in 1 2 3; do echo tick $i; date +%s.%N >> {stamps}; sleep 1; done"
    running = subprocess.Popen(
        [sys.executable, "-m", "remsvc_core.cli", "run", "--target", kept_server.target,
         "--follow", "--output", "json", ticker],
        env=cli_env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )  # fmt: skip
    assert running.stderr is not None
    seen: dict[str, float] = {}
    for line in running.stderr:  # ends when the CLI exits (bounded by the command)
        seen.setdefault(line.strip(), time.time())
    running.wait(timeout=60)
    printed = [float(t) for t in stamps.read_text().split()]
    delays = [seen[f"[tid 1] tick {n}"] - printed[n - 1] for n in (1, 2, 3)]
    print(f"--follow: printed -> on the CLI's stderr after {[round(d, 3) for d in delays]} s")
    assert all(delay < 5 for delay in delays), delays
    assert running.returncode == 0


def test_a_large_output_goes_to_a_file_with_its_hash(
    kept_server: Any, tmp_path: Path, run_cli: Any
) -> None:
    size = 24 << 20
    command = f"head -c {size} /dev/urandom | tee {tmp_path / 'sent'}"
    result = run_cli(
        "run", "--target", kept_server.target, "--output-dir", str(tmp_path / "out"), "--usage",
        command,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    item = json.loads(result.stdout)["results"][0]
    assert item["out"] == ""
    sent = (tmp_path / "sent").read_bytes()
    assert Path(item["out_file"]).read_bytes() == sent
    assert item["out_sha256"] == hashlib.sha256(sent).hexdigest()
    assert item["user_cpu_ms"] is not None
    assert os.path.dirname(item["out_file"]) == str(tmp_path / "out")
