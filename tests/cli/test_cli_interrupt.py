"""Ctrl-C during ``remsvc run``: the results that arrived are printed, exit 130,
and the embedded server takes its running command down with it."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

WAIT_S = 30.0


def _wait_for(path: Path, proc: subprocess.Popen[str]) -> None:
    deadline = time.monotonic() + WAIT_S
    while not (path.exists() and path.read_text().strip()):
        assert proc.poll() is None, proc.communicate(timeout=5)
        assert time.monotonic() < deadline, f"{path} never appeared"
        time.sleep(0.05)


def _gone(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as handle:
            return handle.read().rsplit(")", 1)[1].split()[0] in ("Z", "X")
    except FileNotFoundError:
        return True


def test_sigint_prints_partial_results_and_exits_130(
    cli_env: dict[str, str], tmp_path: Path
) -> None:
    pid_file = tmp_path / "sleeper.pid"
    commands = ["echo first", f"echo $$ > {pid_file}; exec sleep 60", "echo never"]
    proc = subprocess.Popen(
        [sys.executable, "-m", "remsvc_core.cli", "run", "-o", "json", *commands],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=cli_env,
    )
    try:
        # Command 2 starts only after command 1's result was written (one at a time).
        _wait_for(pid_file, proc)
        time.sleep(0.5)  # let that result cross the loopback socket
        proc.send_signal(signal.SIGINT)
        stdout, stderr = proc.communicate(timeout=WAIT_S)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate(timeout=10)
    assert proc.returncode == 130, stderr
    outcome = json.loads(stdout)
    assert [r["out"] for r in outcome["results"]] == ["first\n"]
    assert outcome["missing_tids"] == [2, 3]
    assert outcome["status_code"] == "CANCELLED"
    assert "Traceback" not in stderr
    sleeper = int(pid_file.read_text())
    deadline = time.monotonic() + WAIT_S
    while not _gone(sleeper) and time.monotonic() < deadline:
        time.sleep(0.05)
    try:
        assert _gone(sleeper), "the interrupted command is still running"
    finally:
        if not _gone(sleeper):
            os.kill(sleeper, signal.SIGKILL)
