"""Running one RemSvcOperator task with real ``dag.test()`` and reading what it left.

Imported lazily by the Airflow tests, after conftest.py pointed Airflow at the
session's throw-away AIRFLOW_HOME. (The same few steps as tests/provider's helpers,
kept here so this suite does not depend on another directory's conftest.)
"""

from __future__ import annotations

import datetime
import json
from typing import Any

__all__ = ["TaskRun", "run_task"]

START = datetime.datetime(2024, 1, 1, tzinfo=datetime.timezone.utc)


class TaskRun:
    """The finished run of a one-task DAG: its state and what the task pushed."""

    def __init__(self, dag_run: Any) -> None:
        self.dag_run = dag_run

    @property
    def state(self) -> str:
        return str(self.dag_run.state)

    @property
    def task_state(self) -> str:
        (ti,) = self.dag_run.get_task_instances()
        return str(ti.state.value if hasattr(ti.state, "value") else ti.state)

    def xcom(self) -> Any:
        """The task's return_value XCom, deserialized as a downstream task sees it."""
        from airflow.models.xcom import XComModel
        from airflow.sdk.serde import deserialize
        from airflow.utils.session import create_session

        with create_session() as session:
            row = session.scalars(
                XComModel.get_many(
                    run_id=self.dag_run.run_id,
                    dag_ids=self.dag_run.dag_id,
                    task_ids="run",
                    map_indexes=-1,
                    key="return_value",
                )
            ).first()
            if row is None:
                raise LookupError(f"no XCom from {self.dag_run.dag_id}.run")
            stored = row.value
        return deserialize(json.loads(stored) if isinstance(stored, str) else stored)

    def raw_xcom_texts(self) -> list[str]:
        """Every XCom of the run as the JSON text stored in the database."""
        from airflow.models.xcom import XComModel
        from airflow.utils.session import create_session

        with create_session() as session:
            rows = session.scalars(
                XComModel.get_many(run_id=self.dag_run.run_id, dag_ids=self.dag_run.dag_id)
            )
            return [r.value if isinstance(r.value, str) else json.dumps(r.value) for r in rows]


def run_task(dag_id: str, **operator_kwargs: Any) -> TaskRun:
    """Build a DAG with one RemSvcOperator (task id ``run``), register it, ``dag.test()`` it."""
    from airflow.dag_processing.dagbag import DagBag, sync_bag_to_db
    from airflow.sdk import DAG

    from remsvc_provider.operators.remsvc import RemSvcOperator

    with DAG(dag_id, schedule=None, start_date=START, catchup=False) as dag:
        RemSvcOperator(task_id="run", **operator_kwargs)
    bag = DagBag(dag_folder="/nonexistent-remsvc-dags", collect_dags=False)
    bag.bag_dag(dag)
    sync_bag_to_db(bag, "dags-folder", None)
    return TaskRun(dag.test())
