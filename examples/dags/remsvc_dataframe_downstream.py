"""A DataFrame made by the ``dataframe`` handler, consumed by a downstream task.

The DataFrame travels through XCom (Airflow serializes pandas objects) and comes
back equal, with the same columns and dtypes.
"""

from __future__ import annotations

import datetime
from typing import Any

from airflow.sdk import DAG, task

from remsvc_provider.operators.remsvc import RemSvcOperator

with DAG(
    dag_id="remsvc_dataframe_downstream",
    schedule=None,
    start_date=datetime.datetime(2024, 1, 1),
    catchup=False,
    tags=["remsvc", "example"],
) as dag:
    disk_usage = RemSvcOperator(
        task_id="disk_usage",
        commands=[
            {"cmd": "df -P / | tail -n 1"},
            {"cmd": "df -P /tmp | tail -n 1"},
        ],
        result_handler="dataframe",
    )

    @task
    def summarize(pushed: dict[str, Any]) -> dict[str, Any]:
        frame = pushed["results"]  # a pandas DataFrame: tid, cmd, rc, out, err, hsh
        used = frame["out"].str.split().str[4]  # the "Use%" column of df -P
        return {"commands": len(frame), "all_ok": bool((frame["rc"] == 0).all()), "use": list(used)}

    summarize(disk_usage.output)


if __name__ == "__main__":
    # A system test (Airflow 3.2+): with the connections named above set
    # (AIRFLOW_CONN_...), running this file runs the DAG end to end and exits 1 unless
    # it succeeded.
    raise SystemExit(0 if dag.test().state == "success" else 1)
