"""The original provider's README examples, unchanged: code written for
airflow-provider-remsvc 1.0.0 runs as it is.

Needs a connection ``remsvc_default`` of type ``remsvc`` (see docs/dag-authors.md).
"""

from __future__ import annotations

import datetime

from airflow.sdk import DAG

from remsvc_provider.operators.remsvc import RemSvcOperator

with DAG(
    dag_id="remsvc_single_command",
    schedule=None,
    start_date=datetime.datetime(2024, 1, 1),
    catchup=False,
    tags=["remsvc", "example"],
) as dag:
    # Single command
    run = RemSvcOperator(
        task_id="run_remote",
        grpc_conn_id="remsvc_default",
        commands=[{"cmd": "echo hello", "cmdtyp": 0}],
        dag=dag,
    )
single_command_dag = dag

with DAG(
    dag_id="remsvc_multiple_commands",
    schedule=None,
    start_date=datetime.datetime(2024, 1, 1),
    catchup=False,
    tags=["remsvc", "example"],
) as dag:
    # Multiple commands (streamed concurrently), spaced as in the original README.
    # fmt: off
    run = RemSvcOperator(
        task_id="run_remote",
        grpc_conn_id="remsvc_default",
        commands=[
            {"cmd": "echo {{ ds }}",  "cmdtyp": 0},
            {"cmd": "hostname",       "cmdtyp": 0},
            {"cmd": "whoami",         "cmdtyp": 0},
        ],
        stream_timeout=120.0,
        dag=dag,
    )
    # fmt: on


if __name__ == "__main__":
    # A system test (Airflow 3.2+): with the connections named above set
    # (AIRFLOW_CONN_...), running this file runs the DAG end to end and exits 1 unless
    # it succeeded.
    runs = [each.test() for each in (single_command_dag, dag)]
    raise SystemExit(0 if all(run.state == "success" for run in runs) else 1)
