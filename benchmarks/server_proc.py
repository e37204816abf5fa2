"""Our reference server as a separate process on a loopback port.

The server runs in its own process so that the client's CPU time and memory and the
server's are measured apart, as they would be on two hosts.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
from types import TracebackType

from benchmarks.measure import REPO_ROOT, peak_rss_mib, proc_status_kb

_START_TIMEOUT_S = 30.0


class ServerProcess:
    """``remsvc-server`` on 127.0.0.1 with an ephemeral port, for one measurement.

    Use as a context manager; :meth:`peak_rss_mib` and :meth:`cpu_seconds` read the
    server's own /proc entries, so call them before the block ends.
    """

    def __init__(
        self,
        *,
        max_parallel: int = 1,
        output_cap_bytes: int | None = None,
        cmd_timeout_ms: int = 60_000,
        log_level: str = "INFO",
        noop: bool = False,
    ) -> None:
        self._dir = tempfile.TemporaryDirectory(prefix="remsvc-bench-server-")
        self.config_path = os.path.join(self._dir.name, "server.ini")
        self.port_file = os.path.join(self._dir.name, "port")
        self.log_path = os.path.join(self._dir.name, "server.log")
        lines = [
            "[server]",
            "port = 0",
            f"cmd_timeout_ms = {cmd_timeout_ms}",
            f"max_parallel = {max_parallel}",
        ]
        if output_cap_bytes is not None:
            lines.append(f"output_cap_bytes = {output_cap_bytes}")
        lines += ["", "[log]", f"file = {self.log_path}", f"level = {log_level}", ""]
        with open(self.config_path, "w", encoding="utf-8") as handle:
            handle.write("\n".join(lines))
        self.max_parallel = max_parallel
        self.noop = noop  # benchmarks.noop_server instead: answers without running anything
        self.port = 0
        self._proc: subprocess.Popen[bytes] | None = None
        self._stderr_path = os.path.join(self._dir.name, "stderr.txt")

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def pid(self) -> int:
        assert self._proc is not None
        return self._proc.pid

    def start(self) -> ServerProcess:
        command = [sys.executable, "-m", "benchmarks.noop_server", "--port-file", self.port_file]
        if not self.noop:
            command = [
            sys.executable, "-m", "remsvc_core.server",
            "--config", self.config_path,
            "--host", "127.0.0.1",
            "--port", "0",
            "--port-file", self.port_file,
            ]  # fmt: skip
        with open(self._stderr_path, "wb") as stderr:
            self._proc = subprocess.Popen(
                command, cwd=REPO_ROOT, stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL, stderr=stderr,
            )  # fmt: skip
        deadline = time.monotonic() + _START_TIMEOUT_S
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                raise RuntimeError(
                    f"the server exited with {self._proc.returncode}: {self._tail()}"
                )
            text = ""
            if os.path.exists(self.port_file):
                with open(self.port_file, encoding="utf-8") as handle:
                    text = handle.read().strip()
            if text.isdigit() and int(text) > 0:
                self.port = int(text)
                return self
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"the server did not write its port within {_START_TIMEOUT_S:.0f} s")

    def _tail(self) -> str:
        try:
            with open(self._stderr_path, encoding="utf-8", errors="replace") as handle:
                return " ".join(handle.read().strip().splitlines()[-5:])
        except OSError:
            return ""

    def peak_rss_mib(self) -> float:
        return peak_rss_mib(self.pid)

    def cpu_seconds(self, *, children: bool = False) -> float:
        """User plus system CPU the server process has used so far, all its threads; with
        ``children``, that of its reaped children (the commands it ran) instead."""
        with open(f"/proc/{self.pid}/stat", encoding="ascii") as handle:
            fields = handle.read().rsplit(")", 1)[1].split()
        ticks = os.sysconf("SC_CLK_TCK")
        first = 13 if children else 11  # cutime, cstime / utime, stime
        return (int(fields[first]) + int(fields[first + 1])) / ticks

    def rss_mib(self) -> float:
        return proc_status_kb(self.pid).get("VmRSS", 0) / 1024

    def stop(self) -> None:
        proc = self._proc
        if proc is not None and proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=15)
        self._dir.cleanup()

    def __enter__(self) -> ServerProcess:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
