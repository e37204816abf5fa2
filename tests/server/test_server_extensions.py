"""Negotiated extensions against the real reference server: asked for and granted,
asked for and refused, and never sent to a client that did not ask.

Each extension is run both ways (granted, and with the server's extensions switched
off, standing in for the upstream server) and the results compared.
"""

from __future__ import annotations

import hashlib
import logging
import sys
from pathlib import Path
from typing import Any

import grpc
import pytest

from remsvc_core import extensions
from remsvc_core.engine import run_commands_sync
from remsvc_core.hookspecs import hookimpl
from remsvc_core.server.embedded import EmbeddedServer
from remsvc_core.settings import ChannelSettings
from remsvc_core.wire import pb, pb_grpc

pytestmark = pytest.mark.timeout(120)

TICKER = "for i in 1 2 3; do echo line $i; sleep 0.3; done; echo done >&2"


class Watcher:
    """A plugin that keeps live output chunks and heartbeats as they come."""

    def __init__(self) -> None:
        self.chunks: list[tuple[int, str, bytes, int]] = []
        self.heartbeats: list[dict[int, float]] = []
        self.results: list[int] = []

    @hookimpl
    def remsvc_output(self, chunk: Any) -> None:
        self.chunks.append((chunk.tid, chunk.stream, chunk.data, chunk.offset))

    @hookimpl
    def remsvc_heartbeat(self, running: Any) -> None:
        self.heartbeats.append(dict(running))

    @hookimpl
    def remsvc_result(self, result: Any) -> None:
        self.results.append(result.tid)


@pytest.fixture(scope="module")
def server() -> Any:
    with EmbeddedServer() as running:
        yield running


@pytest.fixture(scope="module")
def classic_server() -> Any:
    """Our server with every extension off: what a client sees of the upstream server."""
    with EmbeddedServer(extensions=frozenset()) as running:
        yield running


def _raw_stream(target: str, metadata: tuple[tuple[str, str], ...]) -> tuple[Any, list[Any]]:
    with grpc.insecure_channel(target) as channel:
        call = pb_grpc.RemSvcStub(channel).RemCmdStrm(
            iter([pb.RemCmdMsg(cmd="echo hi", tid=1)]), metadata=metadata, timeout=30
        )
        responses = list(call)
        return call.initial_metadata(), responses


def test_a_client_that_asks_nothing_gets_the_classic_stream(server: Any) -> None:
    initial, responses = _raw_stream(server.target, ())
    assert extensions.EXTENSIONS_KEY not in dict(initial)
    assert len(responses) == 1
    assert not responses[0].HasField("ext")
    assert (responses[0].tid, responses[0].out) == (1, "hi\n")


def test_the_server_grants_what_it_offers_in_its_initial_metadata(server: Any) -> None:
    asked = extensions.request_metadata(batch_key=None, output=True, heartbeat_s=5, usage=True)
    initial, responses = _raw_stream(server.target, tuple(asked))
    granted = extensions.granted_by(initial)
    assert granted == {extensions.OUTPUT, extensions.HEARTBEAT, extensions.USAGE}
    result = responses[-1]
    assert result.ext.WhichOneof("kind") == "result"
    assert result.ext.result.streamed
    assert result.ext.result.usage.wall_ms >= 0


def test_batch_is_not_granted_without_a_state_dir(server: Any) -> None:
    asked = extensions.request_metadata(
        batch_key="k:1", output=False, heartbeat_s=None, usage=False
    )
    initial, _ = _raw_stream(server.target, tuple(asked))
    assert extensions.granted_by(initial) == frozenset()


def test_a_server_with_extensions_off_grants_nothing_and_the_client_says_so_once(
    classic_server: Any, caplog: pytest.LogCaptureFixture
) -> None:
    watcher = Watcher()
    with caplog.at_level(logging.INFO, logger="remsvc_core.engine"):
        outcome = run_commands_sync(
            [TICKER], classic_server.settings(), hooks=[watcher], usage=True, heartbeat_s=1
        )
    assert outcome.complete, outcome.describe_failure()
    assert outcome.extensions == []
    assert watcher.chunks == []  # no live output: it came with the result, as classic
    assert outcome.results[1].out == "line 1\nline 2\nline 3\n"
    assert outcome.results[1].usage is not None
    assert outcome.results[1].usage.wall_ms is None  # asked for, not reported
    notes = [r.getMessage() for r in caplog.records if "did not grant" in r.getMessage()]
    assert len(notes) == 1, notes
    assert "output/1, heartbeat/1, usage/1" in notes[0]


def test_live_output_arrives_before_the_result_and_assembles_to_the_classic_text(
    server: Any, classic_server: Any
) -> None:
    commands = [TICKER, "printf 'no newline'", "printf '\\377\\376bad utf-8\\n'; exit 3"]
    watcher = Watcher()
    live = run_commands_sync(commands, server.settings(), hooks=[watcher], follow=True)
    classic = run_commands_sync(commands, classic_server.settings())
    assert live.extensions == ["heartbeat/1", "output/1"]
    assert [(r.tid, r.rc, r.out, r.err) for r in live.ordered_results()] == [
        (r.tid, r.rc, r.out, r.err) for r in classic.ordered_results()
    ]
    first_lines = [c for c in watcher.chunks if c[0] == 1 and c[1] == "stdout"]
    assert first_lines[0][2].startswith(b"line 1")
    assert b"".join(c[2] for c in first_lines) == b"line 1\nline 2\nline 3\n"
    # Each chunk came while its command ran: before its result was handed on.
    assert [c[3] for c in first_lines] == sorted(c[3] for c in first_lines)
    assert len(first_lines) >= 2  # printed over ~1 s, flushed at least every 0.1 s


def test_live_output_past_the_cap_is_cut_exactly_like_the_classic_result(tmp_path: Path) -> None:
    # 3-byte characters across a 1000-byte cap: the cut splits one, which is dropped.
    command = "python3 -c \"import sys; sys.stdout.write('€' * 2000)\""
    with (
        EmbeddedServer(output_cap_bytes=1000) as live_server,
        EmbeddedServer(output_cap_bytes=1000, extensions=frozenset()) as classic_server,
    ):
        live = run_commands_sync([command], live_server.settings(), follow=True)
        classic = run_commands_sync([command], classic_server.settings())
    assert live.results[1].out == classic.results[1].out
    assert live.results[1].out.endswith("[remSvc: output truncated at 1000 bytes]\x01\n")
    assert live.results[1].out.startswith("€" * 333 + "\n\x01")


def test_usage_reports_what_each_command_cost(server_process: Any) -> None:
    # A server process of its own: a command's peak memory is only measurable above
    # the peak of the process that spawned it (Linux carries that over at exec). The
    # server is exec'd from a 400 MiB launcher, as it is when a big test runner starts
    # it: the launcher's peak is the server's ru_maxrss too, and must not hide the
    # 300 MiB command (CI once reported None for it this way).
    launcher = "import os, sys; b = bytearray(400 << 20); os.execvp(sys.argv[1], sys.argv[1:])"
    process = server_process(prefix=[sys.executable, "-c", launcher])
    settings = ChannelSettings(target=process.target)
    burn = 'python3 -c "sum(range(3_000_000)); b = bytearray(300 * 1024 * 1024)"'
    outcome = run_commands_sync([burn, "true"], settings, usage=True)
    assert outcome.complete, outcome.describe_failure()
    busy, idle = outcome.results[1].usage, outcome.results[2].usage
    assert busy is not None
    assert idle is not None
    assert busy.user_cpu_ms is not None
    assert busy.user_cpu_ms > 0
    assert busy.max_rss_kb is not None
    assert busy.max_rss_kb > 300 * 1024  # the 300 MiB buffer
    # `true` stays far below the server's own size: not measurable, so not reported
    # (rather than the server's size passed off as the command's).
    assert idle.max_rss_kb is None
    assert idle.wall_ms is not None
    raw = outcome.raw_results()
    assert {"wall_ms", "user_cpu_ms", "sys_cpu_ms", "max_rss_kb"} <= set(raw[1])
    plain = run_commands_sync(["true"], settings)
    assert set(plain.raw_results()[1]) == {"tid", "rc", "out", "err", "hsh", "cmd"}


def test_heartbeats_say_which_command_still_runs(server: Any) -> None:
    watcher = Watcher()
    outcome = run_commands_sync(
        ["sleep 3.5", "echo after"], server.settings(), hooks=[watcher], heartbeat_s=1
    )
    assert outcome.complete, outcome.describe_failure()
    assert len(watcher.heartbeats) >= 2, watcher.heartbeats
    assert all(set(beat) == {1} for beat in watcher.heartbeats)
    elapsed = [beat[1] for beat in watcher.heartbeats]
    assert elapsed == sorted(elapsed)
    assert elapsed[-1] >= 1.0


def test_no_heartbeat_while_the_stream_is_busy(server: Any) -> None:
    watcher = Watcher()
    commands = ["sleep 0.2"] * 10  # a result every 0.2 s: never silent for 1 s
    run_commands_sync(commands, server.settings(), hooks=[watcher], heartbeat_s=1)
    assert watcher.heartbeats == []


def test_large_output_is_spilled_to_a_file_with_its_hash(tmp_path: Path) -> None:
    size = 3 * 1024 * 1024
    command = f"head -c {size} /dev/urandom | tee {tmp_path / 'sent'}"
    with EmbeddedServer(output_cap_bytes=8 * 1024 * 1024) as big:
        outcome = run_commands_sync(
            [command], big.settings(), spill_dir=tmp_path / "spill", spill_bytes=1024 * 1024
        )
    result = outcome.results[1]
    assert outcome.complete, outcome.describe_failure()
    assert result.out == ""
    assert result.out_file is not None
    spilled = Path(result.out_file).read_bytes()
    assert spilled == (tmp_path / "sent").read_bytes()
    assert result.out_sha256 == hashlib.sha256(spilled).hexdigest()
    assert outcome.raw_results()[1]["out_file"] == result.out_file
