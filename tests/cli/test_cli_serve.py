"""``remsvc serve`` as a real foreground process: reachable, then drained by SIGTERM.

``--config`` is optional, as for ``remsvc-server``: without it the defaults apply.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

RunCli = Callable[..., subprocess.CompletedProcess[str]]
READY_TIMEOUT_S = 30.0


@pytest.mark.parametrize("with_file", [True, False], ids=["with-config", "defaults"])
def test_serve_answers_ping_and_run_then_stops_on_sigterm(
    run_cli: RunCli, cli_env: dict[str, str], tmp_path: Path, with_file: bool
) -> None:
    command = [sys.executable, "-m", "remsvc_core.cli", "serve"]
    if with_file:
        config = tmp_path / "server.ini"
        # The file says 50051; --port 0 overrides it, so the test never fights for a port.
        config.write_text("[server]\nport = 50051\ncmd_timeout_ms = 5000\n", encoding="utf-8")
        command += ["--config", str(config)]
    # Without a file the defaults apply (127.0.0.1:50051); --port 0 again avoids 50051.
    port_file = tmp_path / "port"
    log = (tmp_path / "serve.log").open("wb")
    command += ["--host", "127.0.0.1", "--port", "0", "--port-file", str(port_file)]
    proc = subprocess.Popen(
        command,
        stdin=subprocess.DEVNULL,
        stdout=log,
        stderr=subprocess.STDOUT,
        env=cli_env,
    )
    try:
        deadline = time.monotonic() + READY_TIMEOUT_S
        while not (port_file.exists() and port_file.read_text().strip()):
            assert proc.poll() is None, (tmp_path / "serve.log").read_text()
            assert time.monotonic() < deadline, "remsvc serve did not become ready"
            time.sleep(0.05)
        target = f"127.0.0.1:{int(port_file.read_text())}"

        ping = run_cli("ping", "--target", target)
        assert ping.returncode == 0, ping.stderr
        assert ping.stdout.startswith(f"pong from {target}")
        ran = run_cli("run", "--target", target, "-o", "json", "echo served")
        assert ran.returncode == 0, ran.stderr
        assert json.loads(ran.stdout)["results"][0]["out"] == "served\n"

        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)
        log.close()
    output = (tmp_path / "serve.log").read_text()
    assert "SIGTERM" in output
    assert os.path.exists(port_file)
