"""The analyst's notebook executes from top to bottom, headless, and makes its files.

The kernel is the interpreter running the tests: a kernelspec pointing at
``sys.executable`` is written to a temporary Jupyter data directory (JUPYTER_PATH),
so this works in a fresh venv without ``ipykernel install`` touching the user's home.
"""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path
from typing import Any

import nbformat
import pandas as pd
import pytest
from nbclient import NotebookClient

from remsvc_core import EmbeddedServer, ServerConfig

NOTEBOOKS = Path(__file__).resolve().parents[2] / "notebooks"
NOTEBOOK = NOTEBOOKS / "analyst-walkthrough.ipynb"
KERNEL_NAME = "remsvc-docs-tests"
CELL_TIMEOUT_S = 120
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _generator() -> Any:
    path = NOTEBOOKS / "make_walkthrough.py"
    spec = importlib.util.spec_from_file_location("make_walkthrough", path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def kernel(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """A kernelspec for the current interpreter, visible only to this test."""
    spec_dir = tmp_path / "jupyter" / "kernels" / KERNEL_NAME
    spec_dir.mkdir(parents=True)
    (spec_dir / "kernel.json").write_text(
        json.dumps(
            {
                "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
                "display_name": "remsvc docs tests",
                "language": "python",
            }
        ),
        encoding="utf-8",
    )
    monkeypatch.setenv("JUPYTER_PATH", str(tmp_path / "jupyter"))
    monkeypatch.setenv("MPLBACKEND", "Agg")
    for name in ("REMSVC_TARGETS", "REMSVC_CA_CERT", "REMSVC_TLS", "REMSVC_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    return KERNEL_NAME


def _execute(workdir: Path, kernel_name: str) -> Any:
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    client = NotebookClient(
        notebook,
        kernel_name=kernel_name,
        timeout=CELL_TIMEOUT_S,
        resources={"metadata": {"path": str(workdir)}},
    )
    client.execute()  # raises CellExecutionError naming the cell if any cell fails
    return notebook


def _check_files(out: Path, hosts: set[str]) -> pd.DataFrame:
    chart = out / "hosts-overview.png"
    assert chart.read_bytes()[:8] == PNG_MAGIC
    assert chart.stat().st_size > 5_000, "the chart is suspiciously small"
    for name in ("results.csv", "results.parquet", "disks.parquet", "summary.csv"):
        assert (out / name).stat().st_size > 0, name
    results = pd.read_parquet(out / "results.parquet")
    assert set(results["host"]) == hosts
    assert len(results) == 6 * len(hosts)  # six commands on every host
    assert (results["rc"].isin([0, 1])).all()
    csv = pd.read_csv(out / "results.csv")
    assert len(csv) == len(results)
    disks = pd.read_parquet(out / "disks.parquet")
    assert set(disks["host"]) == hosts
    assert (disks["mount"] == "/").any()
    return results


def test_committed_notebook_is_what_the_generator_writes() -> None:
    """Edit the cells in make_walkthrough.py; the .ipynb must be regenerated from it."""
    assert NOTEBOOK.read_text(encoding="utf-8") == _generator().render(), (
        "notebooks/analyst-walkthrough.ipynb is stale: run python notebooks/make_walkthrough.py"
    )


def test_committed_notebook_has_no_outputs() -> None:
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    for cell in notebook.cells:
        if cell.cell_type == "code":
            assert cell.outputs == [], cell.id
            assert cell.execution_count is None, cell.id


def test_notebook_runs_on_local_stand_in_servers(
    tmp_path: Path, kernel: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "out"
    monkeypatch.setenv("REMSVC_WALKTHROUGH_OUT", str(out))
    notebook = _execute(tmp_path, kernel)
    _check_files(out, {"web1", "db1"})
    # The chart is shown in the notebook too, not only written to a file.
    images = [
        output
        for cell in notebook.cells
        if cell.cell_type == "code"
        for output in cell.outputs
        if "image/png" in output.get("data", {})
    ]
    assert images


def test_notebook_runs_against_given_servers_with_tls_and_token(
    tmp_path: Path, kernel: str, monkeypatch: pytest.MonkeyPatch, tls_files: Any
) -> None:
    """REMSVC_TARGETS, REMSVC_CA_CERT and REMSVC_TOKEN point it at existing servers."""
    token = "walkthrough-token-81d2"
    config = ServerConfig(
        port=0,
        tls_enabled=True,
        tls_cert=tls_files.server_cert,
        tls_key=tls_files.server_key,
        auth={"analyst": token},
    )
    with EmbeddedServer(config) as first, EmbeddedServer(config) as second:
        targets = [f"localhost:{first.port}", f"localhost:{second.port}"]
        out = tmp_path / "out"
        monkeypatch.setenv("REMSVC_WALKTHROUGH_OUT", str(out))
        monkeypatch.setenv("REMSVC_TARGETS", ",".join(targets))
        monkeypatch.setenv("REMSVC_CA_CERT", tls_files.ca_cert)
        monkeypatch.setenv("REMSVC_TOKEN", token)
        _execute(tmp_path, kernel)
        assert first.commands_run == 6
        assert second.commands_run == 6
    _check_files(out, set(targets))
