"""RemSvcFleetOperator in real ``dag.test()`` runs: one task, many connections, one
trigger, one XCom keyed by host; against real servers with TLS and bearer tokens."""

from __future__ import annotations

import datetime
from collections.abc import Callable
from typing import Any

import pytest
from airflow_runs import (
    OTHER_TOKEN,
    TOKEN,
    raw_xcom_texts,
    run_dag,
    task_states,
    tls_uri,
    xcom_value,
)

from remsvc_core.hostlist import RANGE_DASH

pytestmark = [pytest.mark.airflow, pytest.mark.usefixtures("airflow_db")]

START = datetime.datetime(2024, 1, 1, tzinfo=datetime.timezone.utc)
WEB = ["remsvc_web_1", "remsvc_web_2", "remsvc_web_3"]


def make_dag(dag_id: str, build: Callable[[], Any], **options: Any) -> Any:
    from airflow.sdk import DAG

    with DAG(dag_id, schedule=None, start_date=START, catchup=False, **options) as dag:
        build()
    return dag


def fleet_operator(**kwargs: Any) -> Any:
    from remsvc_provider.operators.fleet import RemSvcFleetOperator

    kwargs.setdefault("task_id", "fleet")
    return RemSvcFleetOperator(**kwargs)


@pytest.fixture
def web_conns(
    set_conn: Callable[[str, str], None], tls_server: Any, second_tls_server: Any, tls_files: Any
) -> list[str]:
    """Three connections to the TLS server, and ``remsvc_db`` to the second one (its own
    token): four hosts, two servers."""
    for conn_id in WEB:
        set_conn(conn_id, tls_uri(tls_server, tls_files))
    set_conn("remsvc_db", tls_uri(second_tls_server, tls_files, token=OTHER_TOKEN))
    return [*WEB, "remsvc_db"]


def run_fleet_dag(dag_id: str, **kwargs: Any) -> tuple[Any, dict[str, Any]]:
    dag_run = run_dag(make_dag(dag_id, lambda: fleet_operator(**kwargs)))
    return dag_run, xcom_value(dag_run, "fleet")


def test_one_task_many_connections_one_frame(web_conns: list[str]) -> None:
    dag_run, pushed = run_fleet_dag(
        "rsf_frame",
        grpc_conn_ids=web_conns,
        commands=["echo hello", "uname -s"],
        result_handler="dataframe",
        max_concurrency=2,
    )

    assert dag_run.state == "success"
    assert pushed["state"] == "SUCCESS"
    assert pushed["error_msg"] is None
    frame = pushed["results"]
    assert list(frame.columns[:2]) == ["host", "tid"]
    assert list(frame["host"]) == [host for host in web_conns for _ in range(2)]
    assert list(frame["out"]) == ["hello\n", "Linux\n"] * 4
    assert list(pushed["hosts"]) == web_conns
    assert pushed["hosts"]["remsvc_db"] == {
        "state": "SUCCESS",
        "conn_id": "remsvc_db",
        "target": pushed["hosts"]["remsvc_db"]["target"],
        "status_code": "OK",
        "error_msg": None,
    }
    for text in raw_xcom_texts(dag_run):
        assert TOKEN not in text
        assert OTHER_TOKEN not in text


def test_connection_ids_from_an_upstream_task_and_labels_from_a_mapping(
    web_conns: list[str],
) -> None:
    from airflow.sdk import task

    def build() -> None:
        @task
        def inventory() -> dict[str, str]:
            return {f"web{i}": conn_id for i, conn_id in enumerate(web_conns, start=1)}

        fleet_operator(grpc_conn_ids=inventory(), commands=["uname -s"], result_handler="grouped")

    dag_run = run_dag(make_dag("rsf_upstream", build))
    pushed = xcom_value(dag_run, "fleet")

    assert dag_run.state == "success"
    assert [(g["hosts"], g["host_count"], g["out"]) for g in pushed["results"]] == [
        (f"web1{RANGE_DASH}web4", 4, "Linux\n")
    ]
    assert pushed["hosts"]["web4"]["conn_id"] == "remsvc_db"


def test_templated_connection_ids_and_budget(web_conns: list[str]) -> None:
    def build() -> None:
        fleet_operator(
            grpc_conn_ids="{{ params.hosts }}",
            max_errors="{{ params.budget }}",
            commands=["echo {{ params.word }}"],
        )

    params = {"hosts": web_conns[:2], "budget": "50%", "word": "templated"}
    dag_run = run_dag(make_dag("rsf_templated", build, params=params))
    pushed = xcom_value(dag_run, "fleet")

    assert dag_run.state == "success"
    assert [(r["host"], r["out"]) for r in pushed["results"]] == [
        ("remsvc_web_1", "templated\n"),
        ("remsvc_web_2", "templated\n"),
    ]


def test_the_failure_names_hosts_tids_exit_codes_and_stderr(
    web_conns: list[str], set_conn: Callable[[str, str], None], closed_port: int
) -> None:
    set_conn("remsvc_gone", f"remsvc://127.0.0.1:{closed_port}")
    dag_run, pushed = run_fleet_dag(
        "rsf_failure",
        grpc_conn_ids=[*WEB, "remsvc_gone"],
        commands=["echo fine", "echo 'disk full on /data' >&2; exit 3"],
        max_concurrency=4,
    )

    assert task_states(dag_run) == {"fleet": "failed"}
    assert pushed["state"] == "FAILED"
    message = pushed["error_msg"]
    assert message.startswith("RemSvc fan-out task 'fleet' failed: 4 of 4 host(s) failed")
    assert "remsvc_web_1 (localhost:" in message
    assert "tid 2 rc=3 stderr: 'disk full on /data'" in message
    assert "remsvc_gone (127.0.0.1:" in message
    assert "stream ended with UNAVAILABLE" in message
    assert pushed["hosts"]["remsvc_web_2"]["state"] == "FAILED"
    assert pushed["hosts"]["remsvc_web_2"]["error_msg"] == "tid 2 rc=3 stderr: 'disk full on /data'"
    # Every result that arrived is kept: two per reachable host.
    assert [(r["host"], r["tid"]) for r in pushed["results"]] == [
        (host, tid) for host in WEB for tid in (1, 2)
    ]


def test_many_failing_hosts_give_a_bounded_message(web_conns: list[str]) -> None:
    hosts = {f"h{i:02d}": "remsvc_web_1" for i in range(1, 41)}
    dag_run, pushed = run_fleet_dag(
        "rsf_bounded",
        grpc_conn_ids=hosts,
        commands=["printf 'x%.0s' $(seq 500) >&2; exit 1"],
        max_concurrency=10,
    )

    assert task_states(dag_run) == {"fleet": "failed"}
    message = pushed["error_msg"]
    assert len(message) < 8_000
    assert "40 of 40 host(s) failed: h01, h02" in message
    assert "and 30 more failed host(s)" in message
    assert len(pushed["hosts"]) == 40


def test_the_error_budget_leaves_hosts_not_started(
    web_conns: list[str], set_conn: Callable[[str, str], None], closed_port: int
) -> None:
    set_conn("remsvc_gone", f"remsvc://127.0.0.1:{closed_port}")
    dag_run, pushed = run_fleet_dag(
        "rsf_budget",
        grpc_conn_ids=["remsvc_gone", *WEB],
        commands=["echo ran"],
        max_concurrency=1,
        max_errors=1,
    )

    assert task_states(dag_run) == {"fleet": "failed"}
    states = {host: entry["state"] for host, entry in pushed["hosts"].items()}
    assert states == {"remsvc_gone": "FAILED", **dict.fromkeys(WEB, "NOT_STARTED")}
    assert pushed["hosts"]["remsvc_web_1"]["error_msg"].startswith("not started")
    assert pushed["results"] == []
    assert (
        "3 host(s) not started because the error budget (max_errors=1) ran out"
        in (pushed["error_msg"])
    )


def test_a_success_threshold_lets_the_task_succeed_with_a_failed_host(
    web_conns: list[str], set_conn: Callable[[str, str], None], closed_port: int
) -> None:
    set_conn("remsvc_gone", f"remsvc://127.0.0.1:{closed_port}")
    dag_run, pushed = run_fleet_dag(
        "rsf_threshold",
        grpc_conn_ids=[*WEB, "remsvc_gone"],
        commands=["echo ran"],
        success_threshold="75%",
    )

    assert dag_run.state == "success"
    assert pushed["state"] == "SUCCESS"
    assert pushed["hosts"]["remsvc_gone"]["state"] == "FAILED"


def test_on_the_worker_without_a_triggerer(web_conns: list[str]) -> None:
    dag_run, pushed = run_fleet_dag(
        "rsf_inline", grpc_conn_ids=web_conns, commands=["echo inline"], deferrable=False
    )

    assert dag_run.state == "success"
    assert [r["out"] for r in pushed["results"]] == ["inline\n"] * 4


def test_an_unknown_connection_fails_before_anything_is_sent(web_conns: list[str]) -> None:
    dag_run, pushed = run_fleet_dag(
        "rsf_unknown", grpc_conn_ids=[*WEB, "remsvc_nowhere"], commands=["echo never"]
    )

    assert task_states(dag_run) == {"fleet": "failed"}
    assert "remsvc_nowhere" in pushed["error_msg"]
    assert "no host was started" in pushed["error_msg"]
    assert pushed["hosts"] == {}


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ({"grpc_conn_ids": []}, "grpc_conn_ids is empty"),
        ({"grpc_conn_ids": ["a", "a"]}, "both name host 'a'"),
        ({"grpc_conn_ids": [42]}, "grpc_conn_ids[0] is 42"),
        ({"max_errors": 0.1}, "write '10%'"),
        ({"success_threshold": "120%"}, "at most 100%"),
        ({"max_concurrency": 0}, "max_concurrency must be a whole number"),
        ({"result_handler": "grupped"}, "grouped"),
    ],
)
def test_mistakes_fail_when_the_dag_is_parsed(arguments: dict[str, Any], message: str) -> None:
    from airflow.sdk.exceptions import AirflowException

    options = {"grpc_conn_ids": ["a", "b"], "commands": ["true"], **arguments}
    with pytest.raises(AirflowException) as caught:
        fleet_operator(**options)
    assert message in str(caught.value)


def test_the_trigger_serializes_only_what_is_set_and_no_secret() -> None:
    from remsvc_provider.triggers.fleet import RemSvcFleetTrigger

    trigger = RemSvcFleetTrigger(
        commands=[{"cmd": "true", "cmdtyp": 0, "cmdusr": "", "src": ""}],
        hosts=[["web1", "remsvc_web_1"]],
    )
    classpath, kwargs = trigger.serialize()
    assert classpath == "remsvc_provider.triggers.fleet.RemSvcFleetTrigger"
    assert set(kwargs) == {"commands", "hosts", "stream_timeout", "metadata"}

    full = RemSvcFleetTrigger(
        **kwargs, max_concurrency=5, max_errors="10%", accepted_rcs=[0, 1], log_output_limit=0
    )
    _, again = full.serialize()
    assert again["max_concurrency"] == 5
    assert again["max_errors"] == "10%"
    assert again["accepted_rcs"] == [0, 1]
    assert RemSvcFleetTrigger(**again).serialize() == full.serialize()
