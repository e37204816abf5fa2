"""Helpers for running DAGs with ``dag.test()`` and reading what they left behind.

Imported by the provider tests after ``conftest.py`` has pointed Airflow at the
session's throw-away AIRFLOW_HOME.
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import urlencode

# A token nobody would type by accident: every secrecy check greps for it.
TOKEN = "tok-remsvc-provider-7f3a9c61e2b44d"
OTHER_TOKEN = "tok-remsvc-second-server-51c0de"
IDENTITY = "airflow-tests"
DENIED_MARKER = "forbidden-by-denylist"


def tls_uri(server: Any, tls_files: Any, token: str = TOKEN, host: str = "localhost") -> str:
    """The standard Airflow URI form: extras as query parameters."""
    query = urlencode({"use_ssl": "true", "ca_cert_path": tls_files.ca_cert, "bearer_token": token})
    return f"remsvc://{host}:{server.port}?{query}"


def serialize(value: Any) -> Any:
    """Airflow's serde, from wherever this Airflow keeps it (the Task SDK from 3.2)."""
    try:
        from airflow.sdk.serde import serialize as serialize_
    except ImportError:  # Airflow 3.1
        from airflow.serialization.serde import serialize as serialize_
    return serialize_(value)


def deserialize(value: Any) -> Any:
    try:
        from airflow.sdk.serde import deserialize as deserialize_
    except ImportError:  # Airflow 3.1
        from airflow.serialization.serde import deserialize as deserialize_
    return deserialize_(value)


def dag_bag_api() -> tuple[Any, Any]:
    """``(DagBag, sync_bag_to_db)``: in ``airflow.dag_processing.dagbag`` from 3.2."""
    try:
        from airflow.dag_processing.dagbag import DagBag, sync_bag_to_db
    except ImportError:  # Airflow 3.1
        from airflow.models.dagbag import DagBag, sync_bag_to_db
    return DagBag, sync_bag_to_db


def run_dag(dag: Any) -> Any:
    """Register ``dag`` in the metadata DB (as the DAG processor would) and ``dag.test()`` it.

    ``dag.test()`` runs each task in-process and, for a deferred task, runs its
    trigger inline, then resumes the task with the trigger's event.
    """
    DagBag, sync_bag_to_db = dag_bag_api()

    bag = DagBag(dag_folder="/nonexistent-remsvc-dags", collect_dags=False)
    bag.bag_dag(dag)
    sync_bag_to_db(bag, "dags-folder", None)
    return dag.test()


def task_states(dag_run: Any) -> dict[str, str]:
    """``{task_id or task_id[map_index]: state}`` for a finished run."""
    states: dict[str, str] = {}
    for ti in dag_run.get_task_instances():
        key = ti.task_id if ti.map_index < 0 else f"{ti.task_id}[{ti.map_index}]"
        states[key] = str(ti.state.value if hasattr(ti.state, "value") else ti.state)
    return states


def xcom_value(
    dag_run: Any, task_id: str, *, map_index: int = -1, key: str = "return_value"
) -> Any:
    """The XCom a task pushed, deserialized the way a downstream task would see it."""
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session

    with create_session() as session:
        row = session.scalars(
            XComModel.get_many(
                run_id=dag_run.run_id,
                dag_ids=dag_run.dag_id,
                task_ids=task_id,
                map_indexes=map_index,
                key=key,
            )
        ).first()
        if row is None:
            raise LookupError(f"no XCom {key!r} from {task_id}[{map_index}] in {dag_run.run_id}")
        stored = row.value
    # The JSON column hands back the serde-encoded value already decoded.
    return deserialize(stored)


def raw_xcom_texts(dag_run: Any) -> list[str]:
    """Every XCom of a run as the JSON text stored in the database."""
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session

    with create_session() as session:
        rows = session.scalars(XComModel.get_many(run_id=dag_run.run_id, dag_ids=dag_run.dag_id))
        return [r.value if isinstance(r.value, str) else json.dumps(r.value) for r in rows]
