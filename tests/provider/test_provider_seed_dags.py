"""DAGs and connections written for airflow-provider-remsvc 1.0.0, run unchanged.

Each test is one thing 1.0.0's users relied on without its docs saying so (issue 17):
a DAG written the way 1.0.0 allowed, run through ``dag.test()`` against the real TLS
server with a bearer token.
"""

from __future__ import annotations

import datetime
import json
from collections.abc import Callable
from typing import Any

import pytest
from airflow_runs import TOKEN, run_dag, tls_uri, xcom_value

pytestmark = [pytest.mark.airflow, pytest.mark.usefixtures("airflow_db")]

SetConn = Callable[[str, str], None]
START = datetime.datetime(2024, 1, 1)


def seed_dag(dag_id: str, params: dict[str, Any] | None = None, **operator_kwargs: Any) -> Any:
    """A DAG as 1.0.0's README wrote them: one RemSvcOperator, ``dag=dag``."""
    from airflow.sdk import DAG

    from remsvc_provider.operators.remsvc import RemSvcOperator

    dag = DAG(dag_id, schedule=None, start_date=START, params=params or {})
    RemSvcOperator(task_id="run_remote", dag=dag, **operator_kwargs)
    return dag


def output_of(capfd: pytest.CaptureFixture[str]) -> str:
    captured = capfd.readouterr()
    return captured.out + captured.err


# -- 1. grpc_conn_id is a template field, as in 1.0.0 --


def test_grpc_conn_id_from_params(set_conn: SetConn, tls_server: Any, tls_files: Any) -> None:
    set_conn("remsvc_from_params", tls_uri(tls_server, tls_files))
    dag = seed_dag(
        "seed_conn_param",
        params={"conn": "remsvc_from_params"},
        grpc_conn_id="{{ params.conn }}",
        commands=[{"cmd": "echo templated-conn", "cmdtyp": 0}],
    )

    dag_run = run_dag(dag)

    assert dag_run.state == "success"
    assert xcom_value(dag_run, "run_remote")["results"][0]["out"] == "templated-conn\n"


# -- 2. connections 1.0.0 accepted: Login/Schema set, extras it did not know --


def test_connection_from_the_1_0_0_form(
    set_conn: SetConn, tls_server: Any, tls_files: Any, capfd: pytest.CaptureFixture[str]
) -> None:
    conn = {
        "conn_type": "remsvc",
        "host": "localhost",
        "port": tls_server.port,
        "login": "airflow",  # 1.0.0's form showed Login and Schema and ignored them
        "schema": "prod",
        "extra": {
            "use_ssl": True,
            "ca_cert_path": tls_files.ca_cert,
            "bearer_token": TOKEN,
            "timeout": 30,  # 1.0.0 ignored keys it did not know
            "description": "db hosts",
        },
    }
    set_conn("remsvc_seed_form", json.dumps(conn))
    dag = seed_dag("seed_form_conn", grpc_conn_id="remsvc_seed_form", commands=["echo form"])

    dag_run = run_dag(dag)
    output = output_of(capfd)

    assert dag_run.state == "success"
    assert xcom_value(dag_run, "run_remote")["results"][0]["out"] == "form\n"
    warnings = [line for line in output.splitlines() if "which a remsvc connection" in line]
    assert warnings, output
    for name in ("login", "schema", "timeout", "description"):
        assert all(name in line for line in warnings), warnings
    assert TOKEN not in output


def test_token_in_the_password_field(set_conn: SetConn, tls_server: Any, tls_files: Any) -> None:
    """The form's Bearer token is the Password field: the one every 3.x UI masks."""
    conn = {
        "conn_type": "remsvc",
        "host": "localhost",
        "port": tls_server.port,
        "password": TOKEN,
        "extra": {"use_ssl": True, "ca_cert_path": tls_files.ca_cert},
    }
    set_conn("remsvc_seed_password", json.dumps(conn))
    dag = seed_dag("seed_password", grpc_conn_id="remsvc_seed_password", commands=["echo pw"])

    dag_run = run_dag(dag)

    assert dag_run.state == "success"


@pytest.mark.parametrize(
    ("extra", "named"),
    [
        ({"use_tls": True}, "use_tls"),  # a typo of use_ssl: ignoring it would drop TLS
        ({"verify": False}, "verify"),
        ({"token": "x"}, "'token'"),
        ({"client_cert": "/etc/hosts"}, "client_cert"),
    ],
)
def test_an_unknown_security_extra_stays_an_error(
    set_conn: SetConn, tls_server: Any, tls_files: Any, extra: dict[str, Any], named: str
) -> None:
    conn_extra = {"use_ssl": True, "ca_cert_path": tls_files.ca_cert, **extra}
    conn = {"conn_type": "remsvc", "host": "localhost", "port": tls_server.port}
    set_conn("remsvc_seed_security", json.dumps({**conn, "extra": conn_extra}))
    dag = seed_dag(
        "seed_security_extra", grpc_conn_id="remsvc_seed_security", commands=["echo x"], retries=2
    )

    dag_run = run_dag(dag)
    pushed = xcom_value(dag_run, "run_remote")

    assert dag_run.state == "failed"
    assert named in pushed["error_msg"]
    assert "never ignored" in pushed["error_msg"]
    (ti,) = dag_run.get_task_instances()
    assert ti.try_number == 1  # a settings mistake is not retried


# -- 3. command dicts with keys 1.0.0 ignored --


def test_unknown_command_keys_are_ignored_with_a_hint(
    tls_conn: str, capfd: pytest.CaptureFixture[str]
) -> None:
    dag = seed_dag(
        "seed_command_keys",
        commands=[
            {"cmd": "echo named", "cmdtyp": 0, "name": "first step"},
            {"cmd": "echo second", "tid": 7, "user": ""},
        ],
    )

    dag_run = run_dag(dag)
    output = output_of(capfd)

    assert dag_run.state == "success"
    results = xcom_value(dag_run, "run_remote")["results"]
    assert [(row["tid"], row["out"]) for row in results] == [(1, "named\n"), (2, "second\n")]
    assert "commands[0]: ignoring unknown key(s) 'name'" in output
    assert "'tid' (assigned by remsvc)" in output
    assert "'user' (did you mean 'cmdusr'?)" in output


def test_a_wrong_type_of_a_known_key_is_still_an_error() -> None:
    from airflow.sdk.exceptions import AirflowException

    with pytest.raises(AirflowException, match="cmdtyp must be 0"):
        seed_dag("seed_bad_type", commands=[{"cmd": "ls", "cmdtyp": "1", "name": "x"}])


# -- 4. a token in metadata, as 1.0.0's docstring suggested --


def rendered_fields_text(dag_run: Any) -> str:
    """Everything Airflow stored as the run's rendered template fields."""
    from airflow.models.renderedtifields import RenderedTaskInstanceFields as Rtif
    from airflow.utils.session import create_session

    with create_session() as session:
        rows = session.query(Rtif).filter(Rtif.dag_id == dag_run.dag_id).all()
        return json.dumps([row.rendered_fields for row in rows], default=str)


def test_a_literal_authorization_key_with_a_templated_token_fails_at_parse_time() -> None:
    from airflow.sdk.exceptions import AirflowException

    with pytest.raises(AirflowException) as caught:
        seed_dag(
            "seed_token_parse",
            commands=["echo hi"],
            metadata=[("authorization", "Bearer {{ var.value.remsvc_token }}")],
        )

    assert "must not contain 'authorization'" in str(caught.value)
    assert "Bearer token field" in str(caught.value)


def test_a_rendered_token_is_refused_and_never_stored(
    tls_conn: str, capfd: pytest.CaptureFixture[str]
) -> None:
    secret = "tok-rendered-into-metadata-61d2"
    refused = seed_dag(
        "seed_token_render",
        params={"key": "Authorization", "token": secret},
        commands=["echo hi"],
        metadata=[("{{ params.key }}", "Bearer {{ params.token }}")],
    )
    # The control: a harmless templated value is stored, so the check below can fail.
    stored = seed_dag(
        "seed_token_control",
        params={"label": "rendered-label-3f9"},
        commands=["echo hi"],
        metadata=[("x-label", "{{ params.label }}")],
    )

    refused_run = run_dag(refused)
    stored_run = run_dag(stored)
    output = output_of(capfd)

    assert refused_run.state == "failed"
    assert "must not contain 'authorization'" in output
    assert "rendered-label-3f9" in rendered_fields_text(stored_run)
    assert secret not in rendered_fields_text(refused_run)
    assert secret not in output
