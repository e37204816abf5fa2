"""The audit log against a real server process: one record per command, rotation by SIGHUP.

Commands end every way they can (run, failed, timed out, refused by the deny list,
refused for a hash mismatch, killed when their caller went away); each leaves exactly
one JSON line with every documented field. The file is then rotated as logrotate
does without ``copytruncate``: ``mv`` it away and send SIGHUP; records written
before stay in the old file, those after go to a new one, and none is lost.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import signal
import stat
import time
from pathlib import Path

import pytest
from procfs_probe import kill_marked, marked_pids, wait_for
from support.server_process import ServerStartError

from remsvc_core.engine import NO_RETRY, run_commands
from remsvc_core.server.audit import FIELDS
from remsvc_core.settings import ChannelSettings
from remsvc_core.wire import pb

pytestmark = [pytest.mark.reliability, pytest.mark.timeout(120)]

TOKEN = "tok-audit-4e8b1c07d9a2"
WAIT_S = 10.0


def records(path: Path) -> list[dict]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def wait_records(path: Path, count: int) -> list[dict]:
    """The file's records once it holds ``count`` (bounded wait: it is written by a thread)."""
    wait_for(lambda: len(records(path)) >= count, WAIT_S)
    return records(path)


@pytest.fixture
def cleanup(marker):
    yield marker
    kill_marked(marker)


async def test_every_command_leaves_one_record_and_rotation_loses_none(
    server_process, tmp_path, cleanup, figures
):
    marker = cleanup
    audit = tmp_path / "audit.jsonl"
    server = server_process(
        auth={"ops": TOKEN},
        denylist={"no_rm": "^rm "},
        cmd_timeout_ms=1500,
        audit_file=str(audit),
    )
    settings = ChannelSettings(target=server.target, bearer_token=TOKEN)

    ran = await run_commands(
        ["echo hello", "exit 3", "kill -9 $$", "sleep 5", "rm -rf /nothing", "echo never"],
        settings,
        stream_timeout=30,
        retry=NO_RETRY,
    )
    assert ran.status_code == "PERMISSION_DENIED"
    cancelled = asyncio.create_task(
        run_commands([f"sleep 300.{marker}"], settings, stream_timeout=30, retry=NO_RETRY)
    )
    await asyncio.to_thread(wait_for, lambda: bool(marked_pids(marker)), WAIT_S)
    cancelled.cancel()
    with pytest.raises(asyncio.CancelledError):
        await cancelled
    first = await asyncio.to_thread(wait_records, audit, 6)

    assert stat.S_IMODE(audit.stat().st_mode) == 0o600
    assert [list(record) for record in first] == [list(FIELDS)] * len(first)
    by_command = {record["cmd"]: record for record in first}
    assert len(first) == 6, first
    hello = by_command["echo hello"]
    assert (hello["event"], hello["decision"], hello["rc"], hello["out_bytes"]) == (
        "command",
        "allowed",
        0,
        6,
    )
    assert hello["identity"] == "ops"
    assert hello["peer"].startswith("ipv4:127.0.0.1:")
    assert hello["rule"] == "no rule refuses it"
    assert hello["cmd_sha256"] == hashlib.sha256(b"echo hello").hexdigest()
    assert hello["time"].endswith("Z")
    assert by_command["exit 3"]["rc"] == 3
    assert (by_command["kill -9 $$"]["rc"], by_command["kill -9 $$"]["signal"]) == (137, 9)
    assert by_command["sleep 5"]["timed_out"] is True
    refused = by_command["rm -rf /nothing"]
    assert (refused["event"], refused["decision"], refused["status"], refused["rc"]) == (
        "refused",
        "refused",
        "PERMISSION_DENIED",
        None,
    )
    assert refused["rule"] == "command denied by denylist rule 'no_rm'"
    assert "echo never" not in by_command
    gone = by_command[f"sleep 300.{marker}"]
    assert (gone["event"], gone["rc"]) == ("cancelled", None)

    # Rotation: move the file away, SIGHUP, and the next records go to a new file.
    rotated = tmp_path / "audit.jsonl.1"
    os.rename(audit, rotated)
    server.popen.send_signal(signal.SIGHUP)
    await asyncio.to_thread(
        wait_for, lambda: "reopening the log and audit files" in server.log_text(), WAIT_S
    )
    after = await run_commands(["echo after rotation"], settings, stream_timeout=30, retry=NO_RETRY)
    assert after.complete
    second = await asyncio.to_thread(wait_records, audit, 1)
    assert [r["cmd"] for r in second] == ["echo after rotation"]
    assert records(rotated) == first
    assert server.returncode is None, "SIGHUP must not stop the server"
    figures.tried("audited commands", len(first) + len(second))
    figures.note(
        f"audit log: {len(first) + len(second)} commands, {len(first) + len(second)} records, "
        "rotated by mv + SIGHUP with none lost"
    )


async def test_the_command_text_can_be_left_out(server_process, tmp_path, figures):
    audit = tmp_path / "audit.jsonl"
    server = server_process(audit_file=str(audit), audit_include_command=False)
    settings = ChannelSettings(target=server.target)
    outcome = await run_commands(["echo secret-ish"], settings, stream_timeout=30)
    assert outcome.complete
    (record,) = await asyncio.to_thread(wait_records, audit, 1)
    figures.tried("audited commands")
    assert record["cmd"] is None
    assert record["cmd_sha256"] == hashlib.sha256(b"echo secret-ish").hexdigest()
    assert "secret-ish" not in audit.read_text()


def test_an_audit_file_that_cannot_be_opened_stops_the_start(server_process, tmp_path):
    with pytest.raises(ServerStartError) as failed:
        server_process(audit_file=str(tmp_path / "no" / "such" / "dir" / "audit.jsonl"))
    assert failed.value.returncode == 2
    assert "[audit] file: cannot open" in failed.value.output


def test_records_escape_what_callers_send(server_process, tmp_path, figures):
    import grpc

    from remsvc_core.wire import pb_grpc

    audit = tmp_path / "audit.jsonl"
    server = server_process(audit_file=str(audit))
    forged = 'x"}\n{"event":"forged'
    with grpc.insecure_channel(server.target) as channel:
        pb_grpc.RemSvcStub(channel).RemCmd(
            pb.RemCmdMsg(cmd="true", tid=1, src=forged, cmdusr=""), timeout=30
        )
    (record,) = wait_records(audit, 1)
    time.sleep(0.2)
    figures.tried("forged audit fields")
    assert len(records(audit)) == 1
    assert record["src"] == forged
