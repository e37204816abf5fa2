"""The bearer token never reaches the metadata database, the task logs or XCom.

A DAG exercising every path that stores or prints something (deferral and trigger
kwargs, the trigger event, success and failure XComs, inline mode, a connection
that cannot be honoured) runs with the token in its connection; then the database
files and every other file under AIRFLOW_HOME are grepped byte for byte, along with
everything the run printed. Positive controls prove each place was really searched.
"""

from __future__ import annotations

import datetime
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from airflow_runs import DENIED_MARKER, TOKEN, raw_xcom_texts, run_dag, task_states, tls_uri

pytestmark = [pytest.mark.airflow, pytest.mark.usefixtures("airflow_db")]

PROBE = "secrecy-probe-4d1e"


def every_file_under(root: Path) -> list[Path]:
    return [path for path in root.rglob("*") if path.is_file()]


def test_token_is_nowhere_after_real_runs(
    set_conn: Callable[[str, str], None],
    tls_server: Any,
    tls_files: Any,
    capfd: pytest.CaptureFixture[str],
) -> None:
    from airflow.sdk import DAG

    from remsvc_provider.operators.remsvc import RemSvcOperator

    uri = tls_uri(tls_server, tls_files)
    set_conn("remsvc_default", uri)
    set_conn("remsvc_typo", uri + "&use_tls=true")  # cannot be honoured: an error event

    with DAG("rs_secrecy", schedule=None, start_date=datetime.datetime(2024, 1, 1)) as dag:
        RemSvcOperator(task_id="ok", commands=[f"echo {PROBE}"], metadata=[("x-probe", PROBE)])
        RemSvcOperator(task_id="frame", commands=[f"echo {PROBE}"], result_handler="dataframe")
        RemSvcOperator(task_id="rc", commands=[f"echo {PROBE} >&2; exit 4"])
        RemSvcOperator(task_id="denied", commands=[f"echo {DENIED_MARKER}"])
        RemSvcOperator(task_id="inline", commands=[f"echo {PROBE}"], deferrable=False)
        RemSvcOperator(task_id="inline_rc", commands=["exit 9"], deferrable=False)
        RemSvcOperator(task_id="typo", commands=["echo x"], grpc_conn_id="remsvc_typo")
        RemSvcOperator(task_id="hash", commands=[f"echo {PROBE}"], result_handler=["verify_hash"])

    dag_run = run_dag(dag)
    printed = capfd.readouterr()
    logs = printed.out + printed.err

    assert task_states(dag_run) == {
        "ok": "success",
        "frame": "success",
        "rc": "failed",
        "denied": "failed",
        "inline": "success",
        "inline_rc": "failed",
        "typo": "failed",
        "hash": "success",
    }

    # The task logs (dag.test prints them) - and they really are the task logs.
    assert "Streaming 1 command(s)" in logs
    assert TOKEN not in logs

    # XCom, as stored.
    xcoms = raw_xcom_texts(dag_run)
    assert len(xcoms) == 8
    assert any(PROBE in text for text in xcoms)
    assert not [text for text in xcoms if TOKEN in text]

    # The metadata database and everything else under AIRFLOW_HOME, byte for byte.
    home = Path(os.environ["AIRFLOW_HOME"])
    files = every_file_under(home)
    database = b"".join(p.read_bytes() for p in files if p.name.startswith("airflow.db"))
    assert PROBE.encode() in database  # trigger kwargs, events and XComs are in there
    leaking = [str(p) for p in files if TOKEN.encode() in p.read_bytes()]
    assert leaking == []
