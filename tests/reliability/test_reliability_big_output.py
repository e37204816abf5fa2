"""Issue 15.4: a 1 GiB stdout through ``remsvc run --output-dir`` in small memory.

The command's output goes out as it is printed (live output), the server keeps none
of it, and the client writes it to a file past 8 MiB: both processes' peak resident
set (read from the kernel: the server's VmHWM, the CLI's wait4 rusage, taken by a
small launcher so that the test process's own size does not count) stays under
150 MiB, and the file's SHA-256 is the one the result records and the one of the
bytes the command printed.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

pytestmark = [pytest.mark.reliability, pytest.mark.slow, pytest.mark.timeout(600)]

SIZE = 1 << 30
LINE = b"remsvc big output, line after line after line\n"


def _expected_sha256() -> str:
    """The SHA-256 of the command's output (LINE repeated, cut at SIZE), computed here."""
    digest = hashlib.sha256()
    block = LINE * (4 * 1024 * 1024 // len(LINE))
    left = SIZE
    while left:
        piece = block[:left]
        digest.update(piece)
        left -= len(piece)
    return digest.hexdigest()


# Runs argv[2:], waits for it, writes its ru_maxrss (KiB) to argv[1], exits with its code.
_LAUNCHER = """
import os, subprocess, sys
child = subprocess.Popen(sys.argv[2:])
_, status, usage = os.wait4(child.pid, 0)
open(sys.argv[1], "w").write(str(usage.ru_maxrss))
sys.exit(os.waitstatus_to_exitcode(status))
"""


def _peak_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as handle:
        for line in handle:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    raise AssertionError("no VmHWM")


def test_a_gigabyte_of_stdout_costs_client_and_server_little_memory(
    server_process: Callable[..., Any], tmp_path: Path, figures: Any
) -> None:
    cli_env = {k: v for k, v in os.environ.items() if not k.startswith("REMSVC_")}
    server = server_process(output_cap_bytes=2 * SIZE, cmd_timeout_ms=300_000)
    server_before = _peak_kib(server.pid)
    line = LINE.decode().rstrip("\n")
    command = f"yes '{line}' | head -c {SIZE}"
    # The CLI is started by a small launcher that reaps it and writes its rusage: a
    # process's ru_maxrss starts at the peak of the process that spawned it (Linux
    # carries the parent's high-water mark over at exec), and this pytest process may
    # hold hundreds of MiB of Airflow by now. The launcher holds about 10.
    maxrss_file = tmp_path / "cli-maxrss"
    cli = subprocess.Popen(
        [sys.executable, "-c", _LAUNCHER, str(maxrss_file),
         sys.executable, "-m", "remsvc_core.cli", "run", "--target", server.target,
         "--output-dir", str(tmp_path / "out"), "--output", "json", "--timeout", "400",
         command],
        env=cli_env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )  # fmt: skip
    # Read both pipes in threads, so a full pipe never stalls the CLI.
    outputs: dict[str, bytes] = {}
    readers = [
        threading.Thread(target=lambda name=name, pipe=pipe: outputs.update({name: pipe.read()}))
        for name, pipe in (("out", cli.stdout), ("err", cli.stderr))
    ]
    for reader in readers:
        reader.start()
    cli.wait()  # bounded by the test's timeout
    for reader in readers:
        reader.join(timeout=60)
    stdout, stderr = outputs["out"], outputs["err"]
    assert cli.returncode == 0, stderr.decode()
    client_peak_mib = int(maxrss_file.read_text()) / 1024
    server_peak_mib = _peak_kib(server.pid) / 1024
    item = json.loads(stdout)["results"][0]
    spilled = Path(item["out_file"])
    expected = _expected_sha256()
    actual = hashlib.sha256()
    with open(spilled, "rb") as handle:
        while chunk := handle.read(8 << 20):
            actual.update(chunk)
    figures.note(
        f"1 GiB stdout through remsvc run --output-dir: client peak RSS {client_peak_mib:.0f} MiB, "
        f"server peak RSS {server_peak_mib:.0f} MiB (was {server_before / 1024:.0f} MiB idle)"
    )
    print(f"client peak {client_peak_mib:.1f} MiB, server peak {server_peak_mib:.1f} MiB")
    assert spilled.stat().st_size == SIZE
    assert item["out_sha256"] == expected
    assert actual.hexdigest() == expected
    assert item["out"] == ""
    assert client_peak_mib < 150
    assert server_peak_mib < 150
