"""Choosing how results are shaped by handler *name*, no Python needed.

Each task runs the same three commands and pushes ``{"state", "results",
"error_msg"}``; only ``results`` differs. ``remsvc handlers`` lists what is installed.
"""

from __future__ import annotations

import datetime

from airflow.sdk import DAG

from remsvc_provider.operators.remsvc import RemSvcOperator

COMMANDS = [
    {"cmd": "uname -s"},
    {"cmd": "df -P / | tail -n 1"},
    # grep exits 1 when nothing matches: rc_filter below accepts that.
    {"cmd": "grep -c remsvc-no-such-line /etc/passwd"},
]

with DAG(
    dag_id="remsvc_handlers_by_name",
    schedule=None,
    start_date=datetime.datetime(2024, 1, 1),
    catchup=False,
    tags=["remsvc", "example"],
) as dag:
    # A list of result dicts sorted by tid (what the default does), named explicitly.
    # (With the grep command this task would fail: by default only rc 0 succeeds.)
    as_list = RemSvcOperator(task_id="as_list", commands=COMMANDS[:2], result_handler="sorted")

    # A pandas DataFrame, one row per command.
    as_frame = RemSvcOperator(
        task_id="as_frame",
        commands=COMMANDS[:2],
        result_handler="dataframe",
    )

    # A name with options: rc 0 and 1 count as success; keep only what succeeded.
    tolerant = RemSvcOperator(
        task_id="tolerant",
        commands=COMMANDS,
        result_handler={"name": "rc_filter", "options": {"accept": [0, 1], "keep": "successes"}},
    )

    # A pipeline, applied left to right: accept rc 0/1, check every hash while the
    # stream runs (in the triggerer), then shape the survivors as a DataFrame.
    pipeline = RemSvcOperator(
        task_id="pipeline",
        commands=COMMANDS,
        result_handler=[
            {"name": "rc_filter", "options": {"accept": [0, 1]}},
            "verify_hash",
            "dataframe",
        ],
    )

    # The same engine inline on the worker, for installations without a triggerer.
    inline = RemSvcOperator(
        task_id="inline",
        commands=COMMANDS[:2],
        result_handler="dataframe",
        deferrable=False,
    )


if __name__ == "__main__":
    # A system test (Airflow 3.2+): with the connections named above set
    # (AIRFLOW_CONN_...), running this file runs the DAG end to end and exits 1 unless
    # it succeeded.
    raise SystemExit(0 if dag.test().state == "success" else 1)
