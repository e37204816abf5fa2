"""What a server says reaches the user's terminal without its escape sequences (issue 12.9).

A malicious or broken server chooses its GetStatus message and its status details;
printed raw, an escape sequence repaints or retitles the terminal, and a newline
forges a line of ``remsvc``'s own output. The CLI prints them escaped, on one line.
"""

from __future__ import annotations

import grpc

EVIL = "state=OK\x1b]0;owned\x07\x1b[2J\nremsvc: 5 command(s) succeeded"


def test_status_message_is_printed_escaped(run_cli, misbehaving):
    server = misbehaving(status_msg=EVIL)
    result = run_cli("status", "--target", server.settings().target)
    assert result.returncode == 0, result.stderr
    assert "\x1b" not in result.stdout
    assert "\x07" not in result.stdout
    assert result.stdout.count("\n") == 1
    assert result.stdout == "state=OK\\x1b]0;owned\\x07\\x1b[2J\\nremsvc: 5 command(s) succeeded\n"


def test_status_details_of_a_failed_stream_are_printed_escaped(run_cli, misbehaving):
    server = misbehaving(
        fail_after_answers=1, fail_code=grpc.StatusCode.INTERNAL, fail_details=EVIL
    )
    result = run_cli("run", "--target", server.settings().target, "echo a", "echo b")
    assert result.returncode == 1
    assert "\x1b" not in result.stderr
    assert "\x07" not in result.stderr
    assert not any(
        line.startswith("remsvc: 5 command(s)") for line in result.stderr.splitlines()
    ), result.stderr
    assert "\\x1b]0;owned\\x07" in result.stderr
