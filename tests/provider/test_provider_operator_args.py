"""The operator's arguments: the original's names and defaults, checks at parse time
(static values) and again after templating."""

from __future__ import annotations

import datetime
import inspect
import textwrap
from pathlib import Path
from typing import Any

import pytest
from airflow_runs import run_dag

pytestmark = [pytest.mark.airflow, pytest.mark.usefixtures("airflow_db")]


def make(**kwargs: Any) -> Any:
    from remsvc_provider.operators.remsvc import RemSvcOperator

    kwargs.setdefault("task_id", "t")
    return RemSvcOperator(**kwargs)


def test_original_parameters_and_defaults() -> None:
    from remsvc_provider.operators.remsvc import RemSvcOperator

    params = inspect.signature(RemSvcOperator.__init__).parameters
    op = make(commands=[{"cmd": "hostname"}])

    assert params["grpc_conn_id"].default == "remsvc_default"
    assert params["stream_timeout"].default == 3600.0
    assert op.metadata == []
    assert op.grpc_conn_id == "remsvc_default"
    assert op.stream_timeout == 3600.0
    assert op.result_handler is None
    assert tuple(RemSvcOperator.template_fields) == ("grpc_conn_id", "commands", "metadata")


@pytest.mark.parametrize("configured", ["True", "False"])
def test_deferrable_follows_operators_default_deferrable(
    monkeypatch: pytest.MonkeyPatch, configured: str
) -> None:
    monkeypatch.setenv("AIRFLOW__OPERATORS__DEFAULT_DEFERRABLE", configured)

    assert make(commands=["ls"]).deferrable is (configured == "True")
    assert make(commands=["ls"], deferrable=True).deferrable is True
    assert make(commands=["ls"], deferrable=False).deferrable is False


@pytest.mark.parametrize(
    ("kwargs", "expected"),
    [
        ({"commands": [{"cmd": "   "}]}, "commands[0].cmd is blank"),
        ({"commands": []}, "commands is empty"),
        ({"commands": [{"cmd": "ls", "tid": 4, "cmdtyp": "0"}]}, "cmdtyp must be 0 (shell) or 1"),
        ({"commands": [{"cmd": "ls", "cmdtyp": 5}]}, "cmdtyp must be 0 (shell) or 1"),
        ({"commands": "hostname"}, "commands must be a list"),
        ({"commands": ["ls"], "result_handler": "no_such_handler"}, "dataframe"),
        (
            {"commands": ["ls"], "result_handler": {"name": "rc_filter", "options": {"keep": "?"}}},
            "keep='?'",
        ),
        ({"commands": ["ls"], "metadata": [("authorization", "Bearer x")]}, "bearer_token"),
        ({"commands": ["ls"], "metadata": [("x-a",)]}, "metadata[0]"),
        ({"commands": ["ls"], "stream_timeout": 0}, "positive"),
        ({"commands": ["ls"], "stream_timeout": "10"}, "number of seconds"),
        ({"commands": ["ls"], "stream_timeout": float("nan")}, "positive"),
    ],
)
def test_static_mistakes_fail_when_the_dag_is_parsed(kwargs: dict[str, Any], expected: str) -> None:
    from airflow.sdk.exceptions import AirflowException

    with pytest.raises(AirflowException) as caught:
        make(**kwargs)

    assert expected in str(caught.value)
    assert "'t'" in str(caught.value)  # names the task


def test_unknown_handler_lists_the_installed_ones() -> None:
    from airflow.sdk.exceptions import AirflowException

    with pytest.raises(AirflowException) as caught:
        make(commands=["ls"], result_handler=["rc_filter", "datafrme"])

    message = str(caught.value)
    for installed in ("sorted", "dataframe", "rc_filter", "verify_hash"):
        assert installed in message


@pytest.mark.parametrize(
    "commands",
    [
        [{"cmd": "{{ params.cmd }}"}],
        "{{ ti.xcom_pull(task_ids='make_commands') }}",
        [{"cmd": "echo {{ ds }}", "cmdtyp": "{{ params.kind }}"}],
    ],
)
def test_templated_values_wait_for_rendering(commands: Any) -> None:
    op = make(commands=commands, metadata=[("x-run", "{{ run_id }}")])

    assert op.commands == commands


def test_partial_checks_static_arguments_too() -> None:
    from airflow.sdk.exceptions import AirflowException

    from remsvc_provider.operators.remsvc import RemSvcOperator

    with pytest.raises(AirflowException, match="no_such_handler"):
        RemSvcOperator.partial(task_id="fan", commands=["ls"], result_handler="no_such_handler")
    with pytest.raises(AirflowException, match="blank"):
        RemSvcOperator.partial(task_id="fan", commands=[{"cmd": ""}])


def test_a_dag_file_with_an_unknown_handler_is_an_import_error(tmp_path: Path) -> None:
    from airflow_runs import dag_bag_api

    DagBag, _ = dag_bag_api()

    (tmp_path / "typo_dag.py").write_text(
        textwrap.dedent(
            """
            import datetime
            from airflow.sdk import DAG
            from remsvc_provider.operators.remsvc import RemSvcOperator

            with DAG("typo", schedule=None, start_date=datetime.datetime(2024, 1, 1)):
                RemSvcOperator(task_id="run", commands=["hostname"], result_handler="datafame")
            """
        )
    )

    bag = DagBag(dag_folder=str(tmp_path))

    (error,) = bag.import_errors.values()
    assert "datafame" in error
    assert "dataframe" in error  # the installed names are listed


def test_command_that_renders_blank_fails_before_anything_is_sent(
    tls_conn: str, capfd: pytest.CaptureFixture[str]
) -> None:
    from airflow.sdk import DAG

    with DAG(
        "rs_blank_after_render",
        schedule=None,
        start_date=datetime.datetime(2024, 1, 1),
        params={"cmd": "  "},
    ) as dag:
        make(task_id="run", commands=[{"cmd": "{{ params.cmd }}"}])

    dag_run = run_dag(dag)

    assert dag_run.state == "failed"
    output = capfd.readouterr()
    assert "commands[0].cmd is blank" in output.out + output.err


def test_metadata_rendered_into_authorization_is_refused(
    tls_conn: str, capfd: pytest.CaptureFixture[str]
) -> None:
    from airflow.sdk import DAG

    with DAG(
        "rs_auth_after_render",
        schedule=None,
        start_date=datetime.datetime(2024, 1, 1),
        params={"key": "Authorization"},
    ) as dag:
        make(task_id="run", commands=["echo hi"], metadata=[("{{ params.key }}", "Bearer x")])

    dag_run = run_dag(dag)

    assert dag_run.state == "failed"
    output = capfd.readouterr()
    assert "must not contain 'authorization'" in output.out + output.err
