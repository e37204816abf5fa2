"""Issue 15.3: a long silent command through a proxy that drops idle connections.

The proxy (tests/support/idle_proxy.py) counts only frames of a call as traffic, as
AWS ALB does: HTTP/2 PINGs do not keep a connection alive. With heartbeats the stream
survives however long the command is silent; without them the proxy cuts it, which
shows the heartbeats are what matters.

By default the test is scaled down (the proxy drops a connection idle for 3 s, the
command is silent for 10 s). With ``REMSVC_LONGHAUL=1`` it runs the issue's own case:
a ten-minute silent command through a proxy that drops after 60 s (``.ci/run`` runs
that beside the suite).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

import pytest
from support.idle_proxy import IdleProxy

from remsvc_core.engine import NO_RETRY, run_commands_sync
from remsvc_core.settings import ChannelSettings

LONGHAUL = os.environ.get("REMSVC_LONGHAUL") == "1"
IDLE_S = 60.0 if LONGHAUL else 3.0
SILENT_S = 600 if LONGHAUL else 10
HEARTBEAT_S = 30.0 if LONGHAUL else 1.0

pytestmark = [pytest.mark.reliability, pytest.mark.timeout(SILENT_S + 300)]


@pytest.mark.parametrize("heartbeats", [True, False], ids=["with-heartbeats", "without"])
def test_a_long_silent_command_survives_an_idle_dropping_proxy_only_with_heartbeats(
    server_process: Callable[..., Any], figures: Any, heartbeats: bool
) -> None:
    server = server_process(cmd_timeout_ms=(SILENT_S + 60) * 1000)
    with IdleProxy(server.port, idle_s=IDLE_S) as proxy:
        outcome = run_commands_sync(
            [f"sleep {SILENT_S}; echo woke"],
            ChannelSettings(target=proxy.target),
            heartbeat_s=HEARTBEAT_S if heartbeats else None,
            retry=NO_RETRY,
            stream_timeout=SILENT_S + 120,
        )
    figures.note(
        f"silent {SILENT_S} s command through a proxy dropping idle connections after "
        f"{IDLE_S:.0f} s, {'with' if heartbeats else 'without'} heartbeats: "
        f"{outcome.status_code}, connections dropped {proxy.dropped}"
    )
    if heartbeats:
        assert outcome.complete, outcome.describe_failure()
        assert outcome.results[1].out == "woke\n"
        assert proxy.dropped == 0
    else:
        assert outcome.status_code == "UNAVAILABLE", outcome.describe_failure()
        assert outcome.results == {}
        assert proxy.dropped == 1
