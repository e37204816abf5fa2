"""``remsvc run`` with no target: the in-process reference server, end to end.

Most tests run the real console entry point as a subprocess (stdout and stderr are
pipes, so JSON is the default and there is no progress bar); a few call ``main()``
in-process where that is faster and equally real.
"""

from __future__ import annotations

import csv
import fcntl
import io
import json
import os
import pty
import select
import shutil
import struct
import subprocess
import sys
import termios
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from remsvc_core.cli import main
from remsvc_core.hashing import command_hash

RunCli = Callable[..., subprocess.CompletedProcess[str]]


def test_quick_start_prints_both_results(run_cli: RunCli) -> None:
    proc = run_cli("run", "echo hello", "uname -a")
    assert proc.returncode == 0, proc.stderr
    outcome = json.loads(proc.stdout)
    assert outcome["ok"] is True
    assert outcome["status_code"] == "OK"
    assert outcome["missing_tids"] == []
    assert [r["cmd"] for r in outcome["results"]] == ["echo hello", "uname -a"]
    assert outcome["results"][0]["out"] == "hello\n"
    assert outcome["results"][1]["out"].startswith(os.uname().sysname)
    assert outcome["target"].startswith("127.0.0.1:")
    assert "2 command(s) succeeded" in proc.stderr


def test_quick_start_as_the_installed_console_script() -> None:
    script = shutil.which("remsvc", path=os.path.dirname(sys.executable))
    assert script, "the remsvc console script is not installed next to this Python"
    proc = subprocess.run(
        [script, "run", "--output", "table", "echo hello", "uname -a"],
        capture_output=True,
        text=True,
        timeout=90,
        stdin=subprocess.DEVNULL,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0].split() == ["tid", "rc", "out", "err"]
    assert lines[1].split() == ["1", "0", "hello"]
    assert lines[2].split()[:3] == ["2", "0", os.uname().sysname]


def test_twelve_commands_come_back_in_command_order(run_cli: RunCli) -> None:
    # Later commands finish sooner, so any ordering by arrival would show.
    commands = [f"sleep 0.0{12 - i}; echo cmd-{i}" for i in range(1, 13)]
    proc = run_cli("run", "--output", "csv", *commands)
    assert proc.returncode == 0, proc.stderr
    rows = list(csv.DictReader(io.StringIO(proc.stdout)))
    assert [row["tid"] for row in rows] == [str(i) for i in range(1, 13)]
    assert [row["out"] for row in rows] == [f"cmd-{i}\n" for i in range(1, 13)]
    assert [row["cmd"] for row in rows] == commands
    assert all(row["hsh"] == command_hash(row["cmd"]) for row in rows)
    assert set(rows[0]) == {"tid", "rc", "out", "err", "hsh", "cmd"}


def test_failing_command_exits_1_and_still_prints_every_result(
    capsys: pytest.CaptureFixture[str],
) -> None:
    status = main(["run", "echo before", "echo oops >&2; exit 7", "echo after"])
    captured = capsys.readouterr()
    assert status == 1
    outcome = json.loads(captured.out)
    assert outcome["ok"] is False
    assert outcome["exit_status"] == 1
    assert outcome["failed_tids"] == [2]
    assert [(r["tid"], r["rc"]) for r in outcome["results"]] == [(1, 0), (2, 7), (3, 0)]
    assert outcome["results"][1]["err"] == "oops\n"
    assert "tid 2 (rc 7)" in captured.err


def test_commands_from_a_file_and_from_stdin(run_cli: RunCli, tmp_path: Path) -> None:
    path = tmp_path / "commands.txt"
    path.write_text("# inventory\necho one\n\necho two\n", encoding="utf-8")
    proc = run_cli("run", "--file", str(path), "--output", "json")
    assert proc.returncode == 0, proc.stderr
    assert [r["out"] for r in json.loads(proc.stdout)["results"]] == ["one\n", "two\n"]

    commands = json.dumps(["echo alpha", {"cmd": "echo beta >&2", "src": "mine"}])
    proc = run_cli("run", "--file", "-", "-o", "csv", input=commands)
    assert proc.returncode == 0, proc.stderr
    rows = list(csv.DictReader(io.StringIO(proc.stdout)))
    assert [(r["out"], r["err"]) for r in rows] == [("alpha\n", ""), ("", "beta\n")]


def test_dataframe_handler_as_csv(run_cli: RunCli) -> None:
    proc = run_cli("run", "--handler", "dataframe", "--output", "csv", "echo a", "echo b; exit 2")
    assert proc.returncode == 1, proc.stderr  # rc 2 is not accepted by default
    rows = list(csv.DictReader(io.StringIO(proc.stdout)))
    assert [(r["tid"], r["rc"], r["out"]) for r in rows] == [("1", "0", "a\n"), ("2", "2", "b\n")]


def test_dataframe_handler_as_json_and_table(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["run", "--handler", "dataframe", "-o", "json", "echo a", "echo b"]) == 0
    document = json.loads(capsys.readouterr().out)
    assert document["handlers"] == ["dataframe"]
    assert [(row["tid"], row["out"]) for row in document["value"]] == [(1, "a\n"), (2, "b\n")]
    assert main(["run", "--handler", "dataframe", "-o", "table", "echo a", "echo b"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split()[:4] == ["tid", "rc", "out", "err"]
    assert lines[1].split()[:3] == ["1", "0", "a"]


def test_handler_pipeline_with_options_decides_success(capsys: pytest.CaptureFixture[str]) -> None:
    argv = [
        "run",
        "-o",
        "json",
        "--handler",
        "rc_filter",
        "--handler-options",
        '{"accept": [0, 1], "keep": "failures"}',
        "echo fine",
        "grep -q nothing /dev/null",  # exits 1: accepted by the pipeline
        "exit 2",
    ]
    assert main(argv) == 1  # rc 2 is still a failure
    document = json.loads(capsys.readouterr().out)
    assert document["failed_tids"] == [3]
    assert [row["tid"] for row in document["value"]] == [3]  # only the failure is kept
    assert len(document["results"]) == 3  # the raw results are all there
    assert main(argv[:-1]) == 0


def test_verify_hash_handler_passes_on_honest_results(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["run", "-o", "json", "--handler", "verify_hash", "echo x"]) == 0
    assert json.loads(capsys.readouterr().out)["ok"] is True


def test_defaults_reach_the_server(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["run", "-o", "json", "--src", "nightly", "echo $0"]) == 0
    document = json.loads(capsys.readouterr().out)
    assert document["commands"][0]["src"] == "nightly"


def test_progress_bar_on_a_real_terminal(cli_env: dict[str, str]) -> None:
    """stderr is a pty: the bar is drawn, then erased; stdout (a pipe) gets JSON."""
    leader, follower = pty.openpty()
    try:
        proc = subprocess.Popen(
            [sys.executable, "-m", "remsvc_core.cli", "run", "echo 1", "exit 1", "echo 3"],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=follower,
            env=cli_env,
        )
        os.close(follower)
        follower = -1
        # Output is tiny, so reading the pty first cannot block the stdout pipe.
        text = _read_until_closed(leader, proc)
        stdout = proc.stdout.read() if proc.stdout else b""
    finally:
        if follower != -1:
            os.close(follower)
        os.close(leader)
    assert proc.returncode == 1
    assert "3/3 done, 1 failed" in text
    assert "\x1b[K" in text
    assert "1 of 3 command(s) failed" in text
    assert len(json.loads(stdout)["results"]) == 3


def test_stream_timeout_keeps_earlier_results(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["run", "-o", "json", "--timeout", "1", "echo quick", "sleep 20"]) == 1
    outcome = json.loads(capsys.readouterr().out)
    assert outcome["status_code"] == "DEADLINE_EXCEEDED"
    assert [r["out"] for r in outcome["results"]] == ["quick\n"]
    assert outcome["missing_tids"] == [2]


def test_table_is_the_default_on_a_terminal(cli_env: dict[str, str]) -> None:
    """stdout and stderr on one pty, 100 columns wide: a fitted table, then the summary."""
    leader, follower = pty.openpty()
    fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 100, 0, 0))
    long_line = "x" * 300
    try:
        proc = subprocess.Popen(
            [sys.executable, "-m", "remsvc_core.cli", "run", "echo hello", f"echo {long_line}"],
            stdin=subprocess.DEVNULL,
            stdout=follower,
            stderr=follower,
            env={k: v for k, v in cli_env.items() if k not in ("COLUMNS", "LINES")},
        )
        os.close(follower)
        follower = -1
        text = _read_until_closed(leader, proc).replace("\r\n", "\n")
    finally:
        if follower != -1:
            os.close(follower)
        os.close(leader)
    assert proc.returncode == 0, text
    # What the terminal shows: each line from its last carriage return, escapes removed.
    shown = [line.rsplit("\r", 1)[-1].replace("\x1b[K", "") for line in text.split("\n")]
    lines = [line for line in shown if line.strip()]
    table = [line for line in lines if not line.startswith("remsvc:")]
    assert table[0].split() == ["tid", "rc", "out", "err"]
    assert table[1].split() == ["1", "0", "hello"]
    assert table[2].split()[:2] == ["2", "0"]
    assert all(len(line) <= 100 for line in table)
    assert table[2].rstrip().endswith("…")
    assert any("2 command(s) succeeded" in line for line in lines)


def _read_until_closed(leader: int, proc: subprocess.Popen[bytes]) -> str:
    seen = b""
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        ready, _, _ = select.select([leader], [], [], 1.0)
        if ready:
            try:
                chunk = os.read(leader, 4096)
            except OSError:  # EIO: the child closed the terminal
                break
            if not chunk:
                break
            seen += chunk
        elif proc.poll() is not None:
            break
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=10)
        raise
    return seen.decode("utf-8", errors="replace")


def test_no_progress_bar_when_stderr_is_not_a_terminal(run_cli: RunCli) -> None:
    proc = run_cli("run", "echo 1")
    assert "done," not in proc.stderr
    assert "\x1b" not in proc.stderr


def test_reader_leaving_early_is_not_an_error(cli_env: dict[str, str]) -> None:
    """`remsvc run ... | head -c 10`: EPIPE on stdout, exit status from the verdict."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "remsvc_core.cli", "run", "-o", "csv", "seq 1 200000"],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=cli_env,
    )
    try:
        assert proc.stdout is not None
        assert proc.stdout.read(10) == b"tid,rc,out"
        proc.stdout.close()
        _, stderr = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)
    assert proc.returncode == 0, stderr
    assert b"Traceback" not in stderr
    assert b"BrokenPipe" not in stderr
