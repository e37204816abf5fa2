"""Issue 12.3: a client that never reads its responses must not make the server run
commands and queue their output without limit (it reached +620 MiB in 50 s on one
stream before). The server stops starting that stream's commands once its unread
responses pass a bound, and starts them again when the client reads.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import grpc
import pytest
from procfs_probe import snapshot

from remsvc_core.wire import pb, pb_grpc

pytestmark = [pytest.mark.reliability, pytest.mark.timeout(180)]

MIB = 1024 * 1024
COMMANDS = 400
WATCH_S = 8.0


def _commands_run(target: str) -> int:
    with grpc.insecure_channel(target) as channel:
        status = pb_grpc.RemSvcStub(channel).GetStatus(pb.Empty(), timeout=10)
    return int(status.msg.split("commands=")[1])


def test_a_client_that_never_reads_holds_the_server_back(
    server_process: Callable[..., Any], figures: Any
) -> None:
    server = server_process(output_cap_bytes=MIB)
    requests = [
        pb.RemCmdMsg(cmd=f"head -c {MIB} /dev/zero; echo {n}", tid=n)
        for n in range(1, COMMANDS + 1)
    ]
    channel = grpc.insecure_channel(server.target)
    call = pb_grpc.RemSvcStub(channel).RemCmdStrm(iter(requests), timeout=120)
    before = snapshot(server.pid).rss_bytes
    peak = before
    deadline = time.monotonic() + WATCH_S
    while time.monotonic() < deadline:  # bounded: WATCH_S, reading nothing
        peak = max(peak, snapshot(server.pid).rss_bytes)
        time.sleep(0.1)
    held = _commands_run(server.target)

    # Now read everything: the rest runs, nothing is lost.
    received: list[int] = []
    reader = threading.Thread(target=lambda: received.extend(r.tid for r in call), daemon=True)
    reader.start()
    reader.join(timeout=150)
    channel.close()
    growth_mib = (peak - before) / MIB
    figures.note(
        f"backpressure: {held} of {COMMANDS} 1 MiB commands ran in {WATCH_S:.0f} s while the "
        f"client read nothing; server RSS +{growth_mib:.0f} MiB at peak"
    )
    print(f"commands run while unread: {held}; peak RSS growth {growth_mib:.1f} MiB")
    assert held < 150, f"{held} commands ran for a client that read nothing"
    assert growth_mib < 160
    assert sorted(received) == list(range(1, COMMANDS + 1))
