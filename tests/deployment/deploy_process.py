"""Long-running processes of a test deployment: started in their own session, logged
to a file, stopped as a group, and found again through a marker in their environment.

Airflow components fork helpers of their own (the scheduler's executor workers and
task supervisors, the triggerer's trigger runner), so a process is stopped by signalling
its whole process group, and "nothing left behind" is checked by scanning ``/proc`` for
the marker variable every process of one deployment inherits.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from support.server_process import process_gone

__all__ = [
    "MARKER_VARIABLE",
    "ManagedProcess",
    "free_loopback_port",
    "log_tail",
    "marked_processes",
]

# Every process a deployment starts carries this variable (value: the deployment's id).
MARKER_VARIABLE = "REMSVC_DEPLOYMENT_ID"
STOP_GRACE_S = 20.0
TAIL_LINES = 60


def free_loopback_port() -> int:
    """A port nothing listens on right now (bound on 127.0.0.1, then released)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


def log_tail(path: Path, lines: int = TAIL_LINES) -> str:
    """The last ``lines`` lines of a log file (or why there are none)."""
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except FileNotFoundError:
        return f"(no log file {path})"
    return "\n".join(text.splitlines()[-lines:]) or "(empty)"


def _environ_has(pid: int, needle: bytes) -> bool:
    try:
        with open(f"/proc/{pid}/environ", "rb") as handle:
            return needle in handle.read().split(b"\0")
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return False


def _cmdline(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as handle:
            return handle.read().replace(b"\0", b" ").decode(errors="replace").strip()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return "?"


def marked_processes(deployment_id: str) -> dict[int, str]:
    """``{pid: command line}`` of every live process started for ``deployment_id``."""
    needle = f"{MARKER_VARIABLE}={deployment_id}".encode()
    own = os.getpid()
    found: dict[int, str] = {}
    for name in os.listdir("/proc"):
        if name.isdigit() and int(name) != own:
            pid = int(name)
            if _environ_has(pid, needle) and not process_gone(pid):
                found[pid] = _cmdline(pid)
    return found


@dataclass
class ManagedProcess:
    """One started process, the leader of its own process group."""

    name: str
    popen: subprocess.Popen[bytes]
    log_path: Path
    _log_handle: IO[bytes] | None = field(default=None, repr=False)

    @classmethod
    def start(
        cls,
        name: str,
        argv: Sequence[str],
        *,
        env: Mapping[str, str],
        log_path: Path,
        cwd: Path,
    ) -> ManagedProcess:
        log_handle = open(log_path, "ab")  # noqa: SIM115 - closed by stop()
        popen = subprocess.Popen(
            list(argv),
            stdin=subprocess.DEVNULL,
            stdout=log_handle,
            stderr=subprocess.STDOUT,
            env=dict(env),
            cwd=cwd,
            # Its own group, so the helpers it forks are stopped (or killed) with it.
            start_new_session=True,
        )
        return cls(name, popen, log_path, log_handle)

    @property
    def pid(self) -> int:
        return self.popen.pid

    @property
    def running(self) -> bool:
        return self.popen.poll() is None

    def tail(self, lines: int = TAIL_LINES) -> str:
        return log_tail(self.log_path, lines)

    def signal_group(self, signum: int) -> None:
        """Send ``signum`` to every process of the group (the leader may be gone already)."""
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.pid, signum)

    def kill(self) -> None:
        """SIGKILL the whole group, as when its host is lost, and reap the leader."""
        self.signal_group(signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.popen.wait(timeout=STOP_GRACE_S)
        # The rest of the group is reaped by init; wait (bounded) until it is.
        deadline = time.monotonic() + STOP_GRACE_S
        while time.monotonic() < deadline and self.group_alive():
            time.sleep(0.05)
        self._close_log()

    def stop(self, grace_s: float = STOP_GRACE_S) -> bool:
        """SIGTERM the group, then SIGKILL whatever is left of it after ``grace_s``.

        Returns whether SIGKILL was needed.
        """
        self.signal_group(signal.SIGTERM)
        deadline = time.monotonic() + grace_s
        while time.monotonic() < deadline and self.group_alive():
            time.sleep(0.1)
        needed_kill = self.group_alive()
        if needed_kill:
            self.signal_group(signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.popen.wait(timeout=grace_s)
        self._close_log()
        return needed_kill

    def group_alive(self) -> bool:
        """Whether any process of the group still runs."""
        self.popen.poll()  # reap the leader, so a zombie leader does not count
        return any(not process_gone(pid) for pid in _group_members(self.pid))

    def _close_log(self) -> None:
        if self._log_handle is not None:
            self._log_handle.close()
            self._log_handle = None


def _group_members(pgid: int) -> list[int]:
    members: list[int] = []
    for name in os.listdir("/proc"):
        if name.isdigit():
            with contextlib.suppress(ProcessLookupError, PermissionError, OSError):
                if os.getpgid(int(name)) == pgid:
                    members.append(int(name))
    return members
