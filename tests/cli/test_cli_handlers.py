"""``remsvc handlers``: every installed handler with its package, version and description."""

from __future__ import annotations

import csv
import io
import json
import subprocess
from collections.abc import Callable

from remsvc_core import __version__

RunCli = Callable[..., subprocess.CompletedProcess[str]]
BUILTINS = {"sorted", "dataframe", "rc_filter", "verify_hash", "grouped"}


def test_table_lists_the_builtins(run_cli: RunCli) -> None:
    proc = run_cli("handlers")
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0].split() == ["name", "package", "version", "description"]
    names = {line.split()[0] for line in lines[1:]}
    assert names >= BUILTINS
    for line in lines[1:]:
        if line.split()[0] in BUILTINS:
            assert line.split()[1:3] == ["airflow-provider-remsvc", __version__]
            assert len(line.split()) > 3  # a description is shown


def test_json_and_csv(run_cli: RunCli) -> None:
    proc = run_cli("handlers", "--output", "json")
    assert proc.returncode == 0, proc.stderr
    handlers = {h["name"]: h for h in json.loads(proc.stdout)}
    assert set(handlers) >= BUILTINS
    assert handlers["dataframe"]["entry_point"] == "remsvc_handlers.dataframe:to_dataframe"
    assert handlers["sorted"]["description"]
    assert handlers["sorted"]["active"] is True
    assert handlers["sorted"]["error"] is None

    rows = list(csv.DictReader(io.StringIO(run_cli("handlers", "-o", "csv").stdout)))
    assert {row["name"] for row in rows} >= BUILTINS
