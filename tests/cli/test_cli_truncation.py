"""Output the server cut at its cap is flagged, never passed off as complete."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable

RunCli = Callable[..., subprocess.CompletedProcess[str]]
BIG = "seq 1 200000"  # 1,288,895 bytes of output, past the default 262,144-byte cap


def test_a_cut_output_is_flagged_in_summary_json_and_table(run_cli: RunCli) -> None:
    as_json = run_cli("run", "--output", "json", BIG, "echo small")
    as_table = run_cli("run", "--output", "table", BIG, "echo small")

    document = json.loads(as_json.stdout)
    assert as_json.returncode == 0  # every command succeeded; the output is what was cut
    assert document["truncated"] == [{"tid": 1, "stream": "stdout", "cap_bytes": 262144}]
    assert any("output truncated at 262,144 bytes: tid 1 stdout" in p for p in document["problems"])
    assert "but some output is incomplete" in as_json.stderr
    assert "warning: output truncated" in as_json.stderr
    assert "--output-cap-bytes" in as_json.stderr
    first_row = as_table.stdout.splitlines()[1]
    assert "[truncated at 262,144 bytes]" in first_row
    assert "[truncated" not in as_table.stdout.splitlines()[2]


def test_output_cap_bytes_raises_the_in_process_servers_cap(run_cli: RunCli) -> None:
    done = run_cli("run", "--output", "json", "--output-cap-bytes", "2000000", BIG)

    document = json.loads(done.stdout)
    assert done.returncode == 0, done.stderr
    assert document["truncated"] == []
    assert document["results"][0]["out"].endswith("\n200000\n")
    assert "incomplete" not in done.stderr


def test_output_cap_bytes_is_refused_for_a_real_server(run_cli: RunCli) -> None:
    done = run_cli("run", "--target", "127.0.0.1:1", "--output-cap-bytes", "10", "echo")

    assert done.returncode == 2
    assert "in-process server's cap" in done.stderr
