"""--max-receive-mb: the client's response limit, for servers with a raised output cap."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable
from typing import Any

RunCli = Callable[..., subprocess.CompletedProcess[str]]

# 3 MiB of output from a server whose cap was raised to 4 MiB.
THREE_MIB = "head -c 3145728 /dev/zero | tr '\\0' x"


def test_a_response_over_the_limit_is_refused_and_raising_it_works(
    run_cli: RunCli, server_process: Callable[..., Any]
) -> None:
    server = server_process(output_cap_bytes=4 << 20)
    where = ("--target", server.target, "-o", "json")

    refused = run_cli("run", *where, "--max-receive-mb", "1", THREE_MIB, "echo after")
    assert refused.returncode == 1, refused.stderr
    outcome = json.loads(refused.stdout)
    assert outcome["status_code"] == "RESOURCE_EXHAUSTED"
    assert 1 in outcome["missing_tids"]

    accepted = run_cli("run", *where, "--max-receive-mb", "8", THREE_MIB, "echo after")
    assert accepted.returncode == 0, accepted.stderr
    results = json.loads(accepted.stdout)["results"]
    assert len(results[0]["out"]) == 3 << 20
    assert results[1]["out"] == "after\n"


def test_out_of_range_limit_is_a_usage_error(run_cli: RunCli) -> None:
    done = run_cli("run", "--target", "127.0.0.1:1", "--max-receive-mb", "0", "true")
    assert done.returncode == 2
    assert "--max-receive-mb must be a whole number of MiB from 1 to 2047" in done.stderr
