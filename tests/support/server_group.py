"""Many simulated hosts from a few processes: reference servers on loopback addresses.

``python -m support.server_group --config INI --hosts N --first-address 127.0.3.1
--ports-file PATH`` starts N reference servers in one process, one per loopback
address (127.0.3.1, 127.0.3.2, ...; all of 127.0.0.0/8 is loopback), each on its own
ephemeral port, with the same configuration, and writes ``address:port`` lines to
PATH once all of them listen. Each is a whole server (its own runner, limits and
kept batches), so the fan-out sees N independent hosts; they stop on SIGTERM.

:func:`launch_group` starts such a process from a test and returns its targets.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ipaddress
import logging
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

START_TIMEOUT_S = 60.0

__all__ = ["ServerGroup", "launch_group"]


@dataclass
class ServerGroup:
    """A process serving several simulated hosts; ``targets`` are their ``host:port``."""

    popen: subprocess.Popen[bytes]
    targets: list[str]
    log_path: Path
    _log: Any = field(repr=False, default=None)

    def log_text(self) -> str:
        return self.log_path.read_text(encoding="utf-8", errors="replace")

    def close(self) -> None:
        """SIGTERM (the servers drain), then SIGKILL after a bound."""
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGTERM)
            try:
                self.popen.wait(timeout=20.0)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait(timeout=10.0)
        if self._log is not None:
            self._log.close()
            self._log = None


def launch_group(
    workdir: Path,
    hosts: int,
    first_address: str,
    config_text: str = "[log]\nlevel = warning\n",
    env: dict[str, str] | None = None,
) -> ServerGroup:
    """Start ``hosts`` reference servers on consecutive loopback addresses from
    ``first_address``, in one process; returns once all of them listen. ``env`` is
    added to the process's environment, which the commands inherit: how a test makes
    one group of hosts behave differently from another."""
    workdir.mkdir(parents=True, exist_ok=True)
    config = workdir / "server.ini"
    config.write_text(config_text, encoding="utf-8")
    ports = workdir / "ports"
    log_path = workdir / "group.log"
    log = open(log_path, "wb")  # noqa: SIM115 - closed by ServerGroup.close
    support = Path(__file__).resolve().parent
    environment = {
        **os.environ,
        **(env or {}),
        "PYTHONPATH": os.pathsep.join([str(support.parent), *sys.path]),
    }
    popen = subprocess.Popen(
        [sys.executable, "-m", "support.server_group", "--config", str(config),
         "--hosts", str(hosts), "--first-address", first_address, "--ports-file", str(ports)],
        stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, env=environment,
        cwd=workdir,
    )  # fmt: skip
    group = ServerGroup(popen, [], log_path, log)
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if ports.exists():
            group.targets = ports.read_text(encoding="ascii").split()
            return group
        if popen.poll() is not None:
            break
        time.sleep(0.05)
    group.close()
    raise RuntimeError(f"server group did not start:\n{group.log_text()[-3000:]}")


async def _serve(config_path: str, hosts: int, first: str, ports_file: str) -> None:
    from remsvc_core.server.app import start_server
    from remsvc_core.server.config import load_config

    base = load_config(config_path)
    start = ipaddress.IPv4Address(first)
    servers = []
    try:
        for offset in range(hosts):
            address = str(start + offset)
            servers.append(await start_server(base.replace(host=address, port=0)))
        await asyncio.to_thread(_write_targets, ports_file, [s.target for s in servers])
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, stop.set)
        await stop.wait()
    finally:
        await asyncio.gather(*(server.stop(2.0) for server in servers))


def _write_targets(path: str, targets: list[str]) -> None:
    tmp = f"{path}.tmp"
    with open(tmp, "w", encoding="ascii") as handle:
        handle.writelines(f"{target}\n" for target in targets)
    os.replace(tmp, path)  # readers see all targets or none


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--config", required=True)
    parser.add_argument("--hosts", type=int, required=True)
    parser.add_argument("--first-address", required=True)
    parser.add_argument("--ports-file", required=True)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s %(message)s")
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_serve(args.config, args.hosts, args.first_address, args.ports_file))


if __name__ == "__main__":
    main()
