"""The same commands on several hosts at once: one connection per host, fanned out
with dynamic task mapping. Each mapped task instance is its own stream (and its own
trigger), so hosts run in parallel and fail or retry independently.

Needs connections ``remsvc_web_1``, ``remsvc_web_2`` and ``remsvc_web_3``.
"""

from __future__ import annotations

import datetime
from typing import Any

from airflow.sdk import DAG, task

from remsvc_provider.operators.remsvc import RemSvcOperator

HOSTS = ["remsvc_web_1", "remsvc_web_2", "remsvc_web_3"]

with DAG(
    dag_id="remsvc_fan_out",
    schedule=None,
    start_date=datetime.datetime(2024, 1, 1),
    catchup=False,
    tags=["remsvc", "example"],
) as dag:
    uptime = RemSvcOperator.partial(
        task_id="uptime",
        commands=[{"cmd": "cat /proc/uptime"}, {"cmd": "cat /proc/loadavg"}],
        stream_timeout=300.0,
        result_handler="dataframe",
    ).expand(grpc_conn_id=HOSTS)

    @task
    def collect(per_host: list[dict[str, Any]]) -> dict[str, str]:
        # One XCom per mapped instance, in map index order (the order of HOSTS).
        return {
            host: pushed["results"]["out"].iloc[1].split()[0]
            for host, pushed in zip(HOSTS, per_host, strict=True)
        }

    collect(uptime.output)


if __name__ == "__main__":
    # A system test (Airflow 3.2+): with the connections named above set
    # (AIRFLOW_CONN_...), running this file runs the DAG end to end and exits 1 unless
    # it succeeded.
    raise SystemExit(0 if dag.test().state == "success" else 1)
