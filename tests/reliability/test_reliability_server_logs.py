"""Issue 12.9, the server's side: its log cannot be forged, and a full disk does not stop it.

* ``cmdusr`` was logged raw: a caller could end the line and write one of its own
  (``nobody\\n... INFO remsvc.server: command identity=admin ...``). Every value a
  caller chooses now reaches the log with its control characters escaped.
* A full disk under ``[log] file`` printed a traceback for every line, and made a
  clean stop exit 1 (``Restart=on-failure`` then restarted a server asked to stop).
  Now it is one warning on stderr; the server goes on serving and stops with 0.
  ``/dev/full`` plays the full disk: every write to it fails with ENOSPC.
"""

from __future__ import annotations

import os
import time

import grpc
import pytest

from remsvc_core.wire import pb, pb_grpc

pytestmark = [pytest.mark.reliability, pytest.mark.timeout(120)]

FORGED = "2026-01-01 00:00:00,000 INFO remsvc.server: command identity=admin src='x' tid=1 rc=0"


def log_lines(server, needle: str, count: int) -> list[str]:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        lines = [line for line in server.log_text().splitlines() if needle in line]
        if len(lines) >= count:
            return lines
        time.sleep(0.05)
    return [line for line in server.log_text().splitlines() if needle in line]


def test_caller_values_cannot_forge_log_lines(server_process, figures):
    server = server_process()
    tricks = {
        "newline in cmdusr": pb.RemCmdMsg(cmd="true", tid=1, cmdusr=f"nobody\n{FORGED}"),
        "carriage return in cmdusr": pb.RemCmdMsg(cmd="true", tid=2, cmdusr=f"x\r{FORGED}"),
        "escape sequence in cmdusr": pb.RemCmdMsg(cmd="true", tid=3, cmdusr="x\x1b[2J\x1b]0;t\x07"),
        "newline in src": pb.RemCmdMsg(cmd="true", tid=4, src=f"job\n{FORGED}"),
        "unicode line separator": pb.RemCmdMsg(cmd="true", tid=5, src=f"job\u2028{FORGED}"),
    }
    with grpc.insecure_channel(server.target) as channel:
        stub = pb_grpc.RemSvcStub(channel)
        for request in tricks.values():
            stub.RemCmd(request, timeout=30)
    lines = log_lines(server, "remsvc.server: command ", len(tricks))
    figures.tried("log forging tricks", len(tricks))
    text = server.log_text()
    assert len(lines) == len(tricks), lines  # one line per command, no more
    assert not any(line.startswith("2026-01-01") for line in text.splitlines())
    assert "\x1b" not in text
    assert "\r" not in text
    assert "\u2028" not in text
    assert "user=nobody\\n2026-01-01" in text
    assert "user=x\\x1b[2J\\x1b]0;t\\x07" in text


def test_a_full_log_disk_is_one_warning_and_a_clean_stop(server_process, figures):
    if not os.path.exists("/dev/full"):
        pytest.skip("no /dev/full to play a full disk")
    server = server_process(log_file="/dev/full", audit_file="/dev/full")
    with grpc.insecure_channel(server.target) as channel:
        stub = pb_grpc.RemSvcStub(channel)
        replies = [stub.RemCmd(pb.RemCmdMsg(cmd=f"echo {n}", tid=n), timeout=30) for n in range(20)]
    assert [reply.out for reply in replies] == [f"{n}\n" for n in range(20)]
    server.terminate()
    code = server.wait(timeout=30)
    text = server.log_text()
    figures.fault("log and audit files on a full disk")
    figures.note(
        f"full log disk: 20 commands served, exit status {code}, "
        f"{text.count('cannot write /dev/full')} warning(s), {text.count('Traceback')} tracebacks"
    )
    assert code == 0, text[-3000:]
    assert "Traceback" not in text
    assert "Logging error" not in text
    # One warning for the log file and one for the audit log; none per line.
    assert text.count("remsvc-server: warning: cannot write /dev/full") == 2, text[-3000:]
