"""The DAGs in examples/dags parse cleanly and run, against a TLS + token server."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from airflow_runs import run_dag, task_states, tls_uri, xcom_value

pytestmark = [pytest.mark.airflow, pytest.mark.usefixtures("airflow_db")]

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "dags"
EXPECTED_DAGS = {
    "remsvc_single_command",
    "remsvc_multiple_commands",
    "remsvc_handlers_by_name",
    "remsvc_dataframe_downstream",
    "remsvc_fan_out",
}


@pytest.fixture(scope="module")
def example_bag() -> Any:
    from airflow_runs import dag_bag_api

    DagBag, _ = dag_bag_api()

    return DagBag(dag_folder=str(EXAMPLES))


@pytest.fixture
def example_conns(set_conn: Callable[[str, str], None], tls_server: Any, tls_files: Any) -> None:
    for conn_id in ("remsvc_default", "remsvc_web_1", "remsvc_web_2", "remsvc_web_3"):
        set_conn(conn_id, tls_uri(tls_server, tls_files))


def test_examples_parse_without_errors(example_bag: Any) -> None:
    assert example_bag.import_errors == {}
    assert set(example_bag.dag_ids) == EXPECTED_DAGS


@pytest.mark.usefixtures("example_conns")
def test_original_single_command(example_bag: Any) -> None:
    dag_run = run_dag(example_bag.get_dag("remsvc_single_command"))

    assert dag_run.state == "success"
    assert xcom_value(dag_run, "run_remote")["results"][0]["out"] == "hello\n"


@pytest.mark.usefixtures("example_conns")
def test_original_multiple_commands(example_bag: Any) -> None:
    dag_run = run_dag(example_bag.get_dag("remsvc_multiple_commands"))
    results = xcom_value(dag_run, "run_remote")["results"]

    assert dag_run.state == "success"
    assert [row["tid"] for row in results] == [1, 2, 3]
    assert re.fullmatch(r"\d{4}-\d{2}-\d{2}\n", results[0]["out"])
    assert results[0]["cmd"].startswith("echo 20")  # rendered, not "{{ ds }}"


@pytest.mark.usefixtures("example_conns")
def test_handlers_by_name(example_bag: Any) -> None:
    import pandas as pd

    dag_run = run_dag(example_bag.get_dag("remsvc_handlers_by_name"))

    assert set(task_states(dag_run).values()) == {"success"}
    assert isinstance(xcom_value(dag_run, "as_frame")["results"], pd.DataFrame)
    assert [row["tid"] for row in xcom_value(dag_run, "tolerant")["results"]] == [1, 2, 3]
    assert list(xcom_value(dag_run, "pipeline")["results"]["rc"]) == [0, 0, 1]
    inline = xcom_value(dag_run, "inline")["results"]
    deferred = xcom_value(dag_run, "as_frame")["results"]
    assert list(inline.dtypes) == list(deferred.dtypes)
    pd.testing.assert_frame_equal(inline.drop(columns="out"), deferred.drop(columns="out"))


@pytest.mark.usefixtures("example_conns")
def test_dataframe_downstream(example_bag: Any) -> None:
    dag_run = run_dag(example_bag.get_dag("remsvc_dataframe_downstream"))

    assert task_states(dag_run) == {"disk_usage": "success", "summarize": "success"}
    summary = xcom_value(dag_run, "summarize")
    assert summary["commands"] == 2
    assert summary["all_ok"] is True
    assert all(value.endswith("%") for value in summary["use"])


@pytest.mark.usefixtures("example_conns")
def test_fan_out(example_bag: Any) -> None:
    dag_run = run_dag(example_bag.get_dag("remsvc_fan_out"))

    states = task_states(dag_run)
    assert states == {
        "uptime[0]": "success",
        "uptime[1]": "success",
        "uptime[2]": "success",
        "collect": "success",
    }
    assert set(xcom_value(dag_run, "collect")) == {"remsvc_web_1", "remsvc_web_2", "remsvc_web_3"}


@pytest.mark.slow
@pytest.mark.usefixtures("example_conns")
@pytest.mark.parametrize("example", sorted(p.name for p in EXAMPLES.glob("*.py")))
def test_each_example_runs_as_a_system_test(example: str) -> None:
    """``python examples/dags/<file>`` runs its DAGs end to end (exit 0 on success), the
    way Airflow's providers run their example DAGs as system tests."""
    import os
    import subprocess
    import sys

    from airflow import __version__ as airflow_version
    from packaging.version import Version

    if Version(airflow_version) < Version("3.2"):
        # 3.1's dag.test() needs the DAG serialized by a DAG processor first (it says
        # "Cannot create DagRun ... because the dag is not serialized"); 3.2+ does it.
        pytest.skip("dag.test() from a script needs Airflow 3.2+ (3.1 wants it parsed first)")

    done = subprocess.run(
        [sys.executable, str(EXAMPLES / example)],
        capture_output=True,
        text=True,
        env=dict(os.environ),
        timeout=300,
        check=False,
    )

    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
