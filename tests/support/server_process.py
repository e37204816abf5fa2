"""Start ``remsvc-server`` as a real subprocess on an ephemeral loopback port.

The server learns its port from ``--port 0`` and reports it through ``--port-file``;
the launcher waits (bounded) for that file, so a test starts talking only once the
server listens. Everything the server prints goes to ``log_path``.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from remsvc_core.server.config_keys import FREE_FORM_SECTIONS, KEYS, key_for_field

__all__ = ["ServerProcess", "ServerStartError", "launch_server", "render_ini"]

START_TIMEOUT_S = 30.0

_SECTIONS = frozenset({key.section for key in KEYS} | FREE_FORM_SECTIONS)


class ServerStartError(RuntimeError):
    """The server exited (or never became ready); ``output`` is everything it printed."""

    def __init__(self, message: str, returncode: int | None, output: str) -> None:
        super().__init__(f"{message}\n--- server output ---\n{output}")
        self.returncode = returncode
        self.output = output


def _ini_value(value: object) -> str:
    """``value`` written so the server's INI dialect (upstream's) reads it back unchanged."""
    if isinstance(value, bool):
        return "true" if value else "false"
    text = str(value).replace("\\", "\\\\").replace('"', '\\"')
    if any(char in text for char in ";,") or text != text.strip():
        text = f'"{text}"'
    return text


def render_ini(sections: Mapping[str, Mapping[str, object] | Iterable[tuple[str, object]]]) -> str:
    lines: list[str] = []
    for section, items in sections.items():
        lines.append(f"[{section}]")
        pairs = items.items() if isinstance(items, Mapping) else items
        lines.extend(f"{key} = {_ini_value(value)}" for key, value in pairs)
        lines.append("")
    return "\n".join(lines)


def sections_from_overrides(overrides: Mapping[str, Any]) -> dict[str, dict[str, object]]:
    """ServerConfig-style keyword overrides (field names, or [server] key names such
    as ``drain_grace_ms``) as INI sections."""
    sections: dict[str, dict[str, object]] = {}
    server_keys = {key.name: key for key in KEYS if key.section == "server"}
    for name, value in overrides.items():
        if name in FREE_FORM_SECTIONS:
            pairs = value.items() if isinstance(value, Mapping) else value
            sections.setdefault(name, {}).update(dict(pairs))
        elif (key := key_for_field(name)) is not None:
            sections.setdefault(key.section, {})[key.name] = key.kind.show(value)
        elif name in server_keys:  # already written as the file writes it
            sections.setdefault("server", {})[name] = value
        else:
            raise TypeError(f"server_process: unknown override {name!r}")
    return sections


@dataclass
class ServerProcess:
    popen: subprocess.Popen[bytes]
    host: str
    port: int
    config_path: Path
    log_path: Path
    _log_handle: Any = field(repr=False, default=None)

    @property
    def pid(self) -> int:
        return self.popen.pid

    @property
    def target(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"

    @property
    def returncode(self) -> int | None:
        return self.popen.poll()

    def log_text(self) -> str:
        return self.log_path.read_text(encoding="utf-8", errors="replace")

    def terminate(self) -> None:
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGTERM)

    def kill(self) -> None:
        if self.popen.poll() is None:
            self.popen.kill()

    def wait(self, timeout: float = 15.0) -> int:
        return self.popen.wait(timeout=timeout)

    def close(self) -> None:
        """Stop the server (SIGTERM, then SIGKILL after a bound) and release files."""
        if self.popen.poll() is None:
            self.terminate()
            try:
                self.popen.wait(timeout=10.0)
            except subprocess.TimeoutExpired:
                self.kill()
                self.popen.wait(timeout=10.0)
        if self._log_handle is not None:
            self._log_handle.close()
            self._log_handle = None


def _server_command() -> list[str]:
    script = Path(sys.executable).with_name("remsvc-server")
    if script.exists():
        return [str(script)]
    found = shutil.which("remsvc-server")
    return [found] if found else [sys.executable, "-m", "remsvc_core.server"]


def launch_server(
    workdir: Path,
    config: str | Mapping[str, Any] | None = None,
    *,
    host: str = "127.0.0.1",
    port: int = 0,
    env: Mapping[str, str] | None = None,
    wait_ready: bool = True,
    prefix: Sequence[str] = (),
    args: Sequence[str] = (),
    **overrides: Any,
) -> ServerProcess:
    """Write the config, start the server, wait until it listens (or raise ServerStartError).

    ``config`` is INI text (used verbatim), a mapping of sections, or a mapping of
    ServerConfig-style overrides; keyword ``overrides`` are merged in as the latter.
    ``prefix`` is put before the server command (e.g. ``setpriv ... --`` to start it
    with fewer privileges); ``args`` are more options after it (``--tls``, ``--allow``).
    ``port`` 0 (default) takes any free port; a fixed one restarts a server where its
    clients expect it.
    """
    workdir.mkdir(parents=True, exist_ok=True)
    if isinstance(config, str):
        if overrides:
            raise TypeError("give INI text or overrides, not both")
        text = config
    else:
        given = dict(config or {})
        if (
            given
            and set(given) <= _SECTIONS
            and all(isinstance(v, Mapping) for v in given.values())
        ):
            sections = {k: dict(v) for k, v in given.items()}
        else:
            sections = sections_from_overrides(given)
        for section, values in sections_from_overrides(overrides).items():
            sections.setdefault(section, {}).update(values)
        text = render_ini(sections)
    config_path = workdir / "server.ini"
    config_path.write_text(text, encoding="utf-8")
    port_file = workdir / "port"
    with contextlib.suppress(FileNotFoundError):
        port_file.unlink()
    log_path = workdir / "server.log"
    log_handle = open(log_path, "wb")  # noqa: SIM115 - closed by ServerProcess.close
    environment = dict(os.environ)
    environment["PYTHONUNBUFFERED"] = "1"
    environment.update(env or {})
    popen = subprocess.Popen(
        [
            *prefix,
            *_server_command(),
            "--config",
            str(config_path),
            "--host",
            host,
            "--port",
            str(port),
            "--port-file",
            str(port_file),
            *args,
        ],
        stdin=subprocess.DEVNULL,
        stdout=log_handle,
        stderr=subprocess.STDOUT,
        env=environment,
        cwd=workdir,
    )
    process = ServerProcess(popen, host, 0, config_path, log_path, log_handle)
    if not wait_ready:
        return process
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if port_file.exists():
            text = port_file.read_text().strip()
            if text:
                process.port = int(text)
                return process
        if popen.poll() is not None:
            process.close()
            raise ServerStartError(
                f"remsvc-server exited with {popen.returncode} before it was ready",
                popen.returncode,
                process.log_text(),
            )
        time.sleep(0.02)
    process.close()
    raise ServerStartError(
        f"remsvc-server not ready after {START_TIMEOUT_S}s", popen.returncode, process.log_text()
    )


def process_gone(pid: int) -> bool:
    """True once ``pid`` no longer runs (a zombie awaiting its reaper counts as gone)."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as handle:
            stat = handle.read()
    except (FileNotFoundError, ProcessLookupError):
        return True
    # The state letter follows the parenthesised command name.
    return stat.rsplit(")", 1)[1].split()[0] in ("Z", "X")


def wait_until_gone(pid: int, timeout: float = 10.0) -> bool:
    """Wait (bounded) for ``pid`` to stop running; returns whether it did."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process_gone(pid):
            return True
        time.sleep(0.02)
    return process_gone(pid)


def wait_for_pid_file(path: Path, timeout: float = 10.0) -> int:
    """Wait (bounded) until a command wrote its pid to ``path``; return the pid."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(FileNotFoundError, ValueError):
            text = path.read_text().strip()
            if text:
                return int(text)
        time.sleep(0.02)
    raise TimeoutError(f"no pid written to {path} within {timeout}s")


@dataclass
class StreamRun:
    """What one RemCmdStrm call gave: the responses, then how the call ended."""

    responses: list[Any]
    code: Any
    details: str

    @property
    def by_tid(self) -> dict[int, Any]:
        return {response.tid: response for response in self.responses}


def run_stream(
    stub: Any, requests: Iterable[Any], *, timeout: float = 30.0, metadata: Any = None
) -> StreamRun:
    """Send ``requests`` on one RemCmdStrm and read every response (bounded by ``timeout``)."""
    import grpc

    responses: list[Any] = []
    call = stub.RemCmdStrm(iter(requests), timeout=timeout, metadata=metadata)
    try:
        for response in call:
            responses.append(response)
    except grpc.RpcError as error:
        # Only code() and details(): debug_error_string() can block on a failed call.
        return StreamRun(responses, error.code(), error.details() or "")
    return StreamRun(responses, grpc.StatusCode.OK, "")


def kill_orphaned_commands(marker: str) -> int:
    """SIGKILL the process group of every command whose command line holds ``marker``.

    A server killed with SIGKILL cannot kill the commands it was running (its docs say
    so); a test that does that cleans up after itself with this. Returns how many.
    """
    killed = 0
    for name in os.listdir("/proc"):
        if not name.isdigit() or int(name) == os.getpid():
            continue
        try:
            with open(f"/proc/{name}/cmdline", "rb") as handle:
                cmdline = handle.read()
        except OSError:
            continue
        if marker.encode() in cmdline:
            with contextlib.suppress(OSError):
                os.killpg(os.getpgid(int(name)), signal.SIGKILL)
                killed += 1
    return killed
