"""What the deployment tests deploy on the RemSvc side: a reference server as production
runs it (TLS and a bearer token, on 127.0.0.1), the connection to it, and DAG files
with a deferrable RemSvcOperator, written as a DAG author would write them."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from deploy_airflow import AirflowDeployment
from support.server_process import ServerProcess, launch_server

__all__ = [
    "SERVER_TOKEN",
    "TASK_ID",
    "connection_uri",
    "launch_tls_server",
    "remsvc_dag",
    "start_deferred_run",
]

# A token nobody would type by accident, so the secrecy checks can grep for it.
SERVER_TOKEN = "tok-remsvc-deployment-3c9e51a7d2"
SERVER_IDENTITY = "airflow-deployment"
# Longer than the default 30 s: the tests' gate commands wait up to two minutes.
SERVER_COMMAND_TIMEOUT_MS = 180_000
TASK_ID = "run"

_DAG_TEMPLATE = '''\
"""Written by tests/deployment: one deferrable RemSvcOperator task."""

import datetime

from airflow.sdk import DAG

from remsvc_provider.operators.remsvc import RemSvcOperator

with DAG(
    {dag_id!r},
    schedule=None,
    start_date=datetime.datetime(2024, 1, 1, tzinfo=datetime.timezone.utc),
    catchup=False,
):
    RemSvcOperator(
        task_id={task_id!r},
        grpc_conn_id={conn_id!r},
        commands={commands!r},
        **{options!r},
    )
'''


def launch_tls_server(workdir: Path, tls_files: Any, **overrides: Any) -> ServerProcess:
    """Start a reference server with TLS (the session's test CA) and ``SERVER_TOKEN``,
    keeping batches (``batch/1``) under ``workdir``, as a production server would;
    ``overrides`` are further ServerConfig fields (``port=`` to restart one in place)."""
    options: dict[str, Any] = {
        "tls_enabled": True,
        "tls_cert": tls_files.server_cert,
        "tls_key": tls_files.server_key,
        "auth": {SERVER_IDENTITY: SERVER_TOKEN},
        "cmd_timeout_ms": SERVER_COMMAND_TIMEOUT_MS,
        "batch_state_dir": str(workdir.parent / f"{workdir.name}-batches"),
        **overrides,
    }
    return launch_server(workdir, **options)


def connection_uri(server: ServerProcess, tls_files: Any) -> str:
    """The Airflow connection URI for ``server`` (extras as query parameters)."""
    query = urlencode(
        {"use_ssl": "true", "ca_cert_path": tls_files.ca_cert, "bearer_token": SERVER_TOKEN}
    )
    return f"remsvc://localhost:{server.port}?{query}"


def remsvc_dag(
    dag_id: str,
    conn_id: str,
    commands: Sequence[Mapping[str, Any]],
    **options: Any,
) -> str:
    """Source of a DAG with one task ``TASK_ID`` streaming ``commands`` over ``conn_id``.

    ``options`` are further RemSvcOperator arguments (plain Python literals).
    """
    return _DAG_TEMPLATE.format(
        dag_id=dag_id,
        task_id=TASK_ID,
        conn_id=conn_id,
        commands=[dict(command) for command in commands],
        options=dict(options),
    )


def start_deferred_run(
    deployment: AirflowDeployment,
    dag_id: str,
    conn_id: str,
    commands: Sequence[Mapping[str, Any]],
    *,
    conf: Mapping[str, Any] | None = None,
    timeout: float,
    options: Mapping[str, Any] | None = None,
) -> str:
    """Deploy a one-task DAG, trigger it (with ``conf``) through the API, and wait until
    its task is deferred; returns the run id. ``options``: more operator arguments."""
    deployment.deploy_dag(dag_id, remsvc_dag(dag_id, conn_id, commands, **(options or {})))
    run_id = deployment.api.trigger(dag_id, conf=conf)
    deployment.api.wait_for_task_state(dag_id, run_id, TASK_ID, {"deferred"}, timeout)
    return run_id
