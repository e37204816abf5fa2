"""Real ``dag.test()`` runs of RemSvcOperator against real servers (TLS + bearer token).

``dag.test()`` runs each task in-process; a deferred task's trigger runs inline (the
engine in the "triggerer"), then the task resumes on the "worker" with the event.
"""

from __future__ import annotations

import datetime
import logging
from collections.abc import Callable
from typing import Any

import pytest
from airflow_runs import (
    DENIED_MARKER,
    OTHER_TOKEN,
    TOKEN,
    run_dag,
    task_states,
    tls_uri,
    xcom_value,
)

from remsvc_core.errors import StopStream
from remsvc_core.hashing import command_hash
from remsvc_core.hookspecs import hookimpl
from remsvc_core.probes import get_status_sync

pytestmark = [pytest.mark.airflow, pytest.mark.usefixtures("airflow_db")]

START = datetime.datetime(2024, 1, 1, tzinfo=datetime.timezone.utc)


def make_dag(dag_id: str, build: Callable[[], Any]) -> Any:
    from airflow.sdk import DAG

    with DAG(dag_id, schedule=None, start_date=START, catchup=False) as dag:
        build()
    return dag


def operator(**kwargs: Any) -> Any:
    from remsvc_provider.operators.remsvc import RemSvcOperator

    kwargs.setdefault("task_id", "run")
    return RemSvcOperator(**kwargs)


def expected_row(tid: int, cmd: str, out: str, rc: int = 0, err: str = "") -> dict[str, Any]:
    return {"tid": tid, "rc": rc, "out": out, "err": err, "hsh": command_hash(cmd), "cmd": cmd}


def run_one(dag_id: str, **kwargs: Any) -> tuple[Any, dict[str, Any]]:
    dag = make_dag(dag_id, lambda: operator(**kwargs))
    dag_run = run_dag(dag)
    return dag_run, xcom_value(dag_run, "run")


def commands_run(server: Any, token: str) -> int:
    """How many commands the server has run (its GetStatus counter)."""
    reply = get_status_sync(server.settings(bearer_token=token))
    return int(reply.fields["commands"])


# -- success --


def test_one_command(tls_conn: str) -> None:
    dag_run, pushed = run_one("rs_one", commands=[{"cmd": "echo hello", "cmdtyp": 0}])

    assert dag_run.state == "success"
    assert pushed == {
        "state": "SUCCESS",
        "results": [expected_row(1, "echo hello", "hello\n")],
        "error_msg": None,
    }


def test_twelve_commands_come_back_in_command_order(tls_conn: str) -> None:
    commands = [{"cmd": f"echo line-{n}"} for n in range(1, 13)]

    dag_run, pushed = run_one("rs_twelve", commands=commands)

    assert dag_run.state == "success"
    assert [row["tid"] for row in pushed["results"]] == list(range(1, 13))
    assert [row["out"] for row in pushed["results"]] == [f"line-{n}\n" for n in range(1, 13)]


def test_templated_commands_are_rendered_then_validated(tls_conn: str) -> None:
    dag_run, pushed = run_one(
        "rs_templated",
        commands=[{"cmd": "echo {{ dag.dag_id }}-{{ task.task_id }}"}],
        metadata=[("x-run", "{{ run_id }}")],
    )

    assert dag_run.state == "success"
    assert pushed["results"][0]["out"] == "rs_templated-run\n"
    assert pushed["results"][0]["cmd"] == "echo rs_templated-run"


def test_src_defaults_to_the_task_instance(tls_conn: str, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="remsvc.server"):
        dag_run, _ = run_one("rs_src", commands=["echo a", {"cmd": "echo b", "src": "mine"}])

    assert dag_run.state == "success"
    server_lines = [r.getMessage() for r in caplog.records if r.name == "remsvc.server"]
    expected = f"airflow:rs_src.run:{dag_run.run_id}:try1"
    assert any(expected in line for line in server_lines), server_lines
    assert any("src='mine'" in line or "src=mine" in line for line in server_lines), server_lines


# -- handlers --


def test_sorted_by_name_is_the_default(tls_conn: str) -> None:
    commands = ["echo x", "echo y"]
    _, by_default = run_one("rs_sorted_default", commands=commands)
    _, by_name = run_one("rs_sorted_named", commands=commands, result_handler="sorted")

    assert by_name["results"] == by_default["results"]
    assert by_name["results"] == [
        expected_row(1, "echo x", "x\n"),
        expected_row(2, "echo y", "y\n"),
    ]


def test_dataframe_handler(tls_conn: str) -> None:
    import pandas as pd

    from remsvc_handlers.dataframe import to_dataframe

    dag_run, pushed = run_one(
        "rs_dataframe", commands=["echo one", "echo two"], result_handler="dataframe"
    )

    assert dag_run.state == "success"
    frame = pushed["results"]
    assert isinstance(frame, pd.DataFrame)
    expected = to_dataframe(
        [expected_row(1, "echo one", "one\n"), expected_row(2, "echo two", "two\n")]
    )
    pd.testing.assert_frame_equal(frame, expected)


def test_rc_filter_with_options_decides_success_and_what_is_kept(tls_conn: str) -> None:
    dag_run, pushed = run_one(
        "rs_rc_filter",
        commands=["echo fine", "exit 3", "echo also-fine"],
        result_handler={"name": "rc_filter", "options": {"accept": [0, 3], "keep": [3]}},
    )

    assert dag_run.state == "success"  # rc 3 is accepted
    assert pushed["state"] == "SUCCESS"
    assert [row["tid"] for row in pushed["results"]] == [2]


def test_verify_hash_runs_in_the_triggerer_and_passes(tls_conn: str) -> None:
    dag_run, pushed = run_one(
        "rs_verify_hash", commands=["echo h1", "echo h2"], result_handler="verify_hash"
    )

    assert dag_run.state == "success"
    assert [row["hsh"] for row in pushed["results"]] == [
        command_hash("echo h1"),
        command_hash("echo h2"),
    ]


def test_pipeline_of_names_with_options(tls_conn: str) -> None:
    import pandas as pd

    dag_run, pushed = run_one(
        "rs_pipeline",
        commands=["echo keep-me", "exit 1", "echo keep-me-too"],
        result_handler=[
            {"name": "rc_filter", "options": {"accept": [0, 1], "keep": "successes"}},
            {"name": "verify_hash", "options": {"on_mismatch": "mark"}},
            "dataframe",
        ],
    )

    assert dag_run.state == "success"
    frame = pushed["results"]
    assert isinstance(frame, pd.DataFrame)
    assert list(frame["tid"]) == [1, 2, 3]
    assert list(frame["hash_ok"]) == [True, True, True]


def shout(results: dict[Any, dict[str, Any]]) -> dict[str, str]:
    """A seed-style callable handler: it gets the raw {tid: result} mapping."""
    return {str(tid): row["out"].strip().upper() for tid, row in sorted(results.items())}


def test_callable_handler_still_works(tls_conn: str) -> None:
    dag_run, pushed = run_one("rs_callable", commands=["echo a", "echo b"], result_handler=shout)

    assert dag_run.state == "success"
    assert pushed["results"] == {"1": "A", "2": "B"}


def test_dataframe_pulled_by_a_downstream_task(tls_conn: str) -> None:
    import pandas as pd

    from remsvc_handlers.dataframe import to_dataframe

    commands = [{"cmd": "echo alpha"}, {"cmd": "printf 'b\\tc'"}, {"cmd": "echo gamma >&2"}]

    def build() -> None:
        from airflow.sdk import task

        as_frame = operator(task_id="as_frame", commands=commands, result_handler="dataframe")
        as_list = operator(task_id="as_list", commands=commands)

        @task
        def compare(frame_payload: dict[str, Any], list_payload: dict[str, Any]) -> int:
            frame = frame_payload["results"]
            assert isinstance(frame, pd.DataFrame), type(frame)
            pd.testing.assert_frame_equal(frame, to_dataframe(list_payload["results"]))
            return len(frame)

        compare(as_frame.output, as_list.output)

    dag_run = run_dag(make_dag("rs_df_downstream", build))

    assert task_states(dag_run) == {
        "as_frame": "success",
        "as_list": "success",
        "compare": "success",
    }
    assert xcom_value(dag_run, "compare") == 3
    pulled = xcom_value(dag_run, "as_frame")["results"]
    assert list(pulled["out"]) == ["alpha\n", "b\tc", ""]
    assert list(pulled["err"]) == ["", "", "gamma\n"]


# -- failures: the XCom is pushed first, with every result that arrived --


def test_non_zero_rc_fails_after_reporting(tls_conn: str) -> None:
    dag_run, pushed = run_one(
        "rs_rc",
        commands=["echo ok", "echo boom-on-stderr >&2; exit 3", "echo after"],
    )

    assert dag_run.state == "failed"
    assert pushed["state"] == "FAILED"
    assert [row["rc"] for row in pushed["results"]] == [0, 3, 0]
    message = pushed["error_msg"]
    assert "tid 2 rc=3 (cmd 'echo boom-on-stderr >&2; exit 3')" in message
    assert "boom-on-stderr" in message
    assert "tid 1" not in message
    assert "tid 3" not in message


def test_denied_command_keeps_earlier_results(tls_conn: str) -> None:
    dag_run, pushed = run_one(
        "rs_denied", commands=["echo before", f"echo {DENIED_MARKER}", "echo never"]
    )

    assert dag_run.state == "failed"
    assert pushed["state"] == "FAILED"
    assert pushed["results"] == [expected_row(1, "echo before", "before\n")]
    assert "PERMISSION_DENIED" in pushed["error_msg"]
    assert "no result for tid(s) 2, 3" in pushed["error_msg"]


def test_server_down(
    set_conn: Callable[[str, str], None], tls_files: Any, closed_port: int
) -> None:
    class Down:
        port = closed_port

    set_conn("remsvc_down", tls_uri(Down(), tls_files))

    dag_run, pushed = run_one(
        "rs_down", commands=["echo hi"], grpc_conn_id="remsvc_down", stream_timeout=20.0
    )

    assert dag_run.state == "failed"
    assert pushed["state"] == "FAILED"
    assert pushed["results"] == []
    assert "UNAVAILABLE" in pushed["error_msg"]
    assert "no result for tid(s) 1" in pushed["error_msg"]


def test_stream_timeout_keeps_partial_results(tls_conn: str) -> None:
    dag_run, pushed = run_one(
        "rs_timeout", commands=["echo first", "sleep 30", "echo third"], stream_timeout=2.0
    )

    assert dag_run.state == "failed"
    assert pushed["results"] == [expected_row(1, "echo first", "first\n")]
    assert "DEADLINE_EXCEEDED" in pushed["error_msg"]
    assert "no result for tid(s) 2, 3" in pushed["error_msg"]


def test_unknown_connection_fails_with_the_reason(tls_conn: str) -> None:
    dag_run, pushed = run_one("rs_no_conn", commands=["echo hi"], grpc_conn_id="remsvc_nowhere")

    assert dag_run.state == "failed"
    assert pushed["state"] == "FAILED"
    assert "remsvc_nowhere" in pushed["error_msg"]


def test_connection_setting_that_cannot_be_honoured_fails(
    set_conn: Callable[[str, str], None], tls_server: Any, tls_files: Any
) -> None:
    set_conn("remsvc_typo", tls_uri(tls_server, tls_files) + "&use_tls=true")

    dag_run, pushed = run_one("rs_typo", commands=["echo hi"], grpc_conn_id="remsvc_typo")

    assert dag_run.state == "failed"
    assert "use_tls" in pushed["error_msg"]
    assert "known settings" in pushed["error_msg"]


# -- without a triggerer --


def test_deferrable_false_runs_inline_with_the_same_result(tls_conn: str) -> None:
    commands = ["echo inline", "echo two"]
    _, deferred = run_one("rs_deferred_ref", commands=commands)
    dag_run, inline = run_one("rs_inline", commands=commands, deferrable=False)

    assert dag_run.state == "success"
    assert inline == deferred


def test_deferrable_false_failure_reports_too(tls_conn: str) -> None:
    dag_run, pushed = run_one("rs_inline_fail", commands=["echo x", "exit 7"], deferrable=False)

    assert dag_run.state == "failed"
    assert pushed["state"] == "FAILED"
    assert "tid 2 rc=7" in pushed["error_msg"]


# -- fan-out --


def test_dynamic_task_mapping_over_two_servers(
    set_conn: Callable[[str, str], None],
    tls_server: Any,
    second_tls_server: Any,
    tls_files: Any,
) -> None:
    from remsvc_provider.operators.remsvc import RemSvcOperator

    set_conn("remsvc_host_a", tls_uri(tls_server, tls_files, TOKEN))
    set_conn("remsvc_host_b", tls_uri(second_tls_server, tls_files, OTHER_TOKEN))
    before_a = commands_run(tls_server, TOKEN)
    before_b = commands_run(second_tls_server, OTHER_TOKEN)

    def build() -> None:
        RemSvcOperator.partial(
            task_id="fan", commands=[{"cmd": "echo fanned"}], result_handler="sorted"
        ).expand(grpc_conn_id=["remsvc_host_a", "remsvc_host_b"])

    dag_run = run_dag(make_dag("rs_fan_out", build))

    assert task_states(dag_run) == {"fan[0]": "success", "fan[1]": "success"}
    for index in (0, 1):
        pushed = xcom_value(dag_run, "fan", map_index=index)
        assert pushed["results"] == [expected_row(1, "echo fanned", "fanned\n")]
    assert commands_run(tls_server, TOKEN) == before_a + 1
    assert commands_run(second_tls_server, OTHER_TOKEN) == before_b + 1


class StopAtFirstResult:
    """A fail-fast check (a pluggy plugin): ends the stream when a result arrives."""

    @hookimpl
    def remsvc_result(self, result: Any, stream: Any) -> None:
        raise StopStream(f"inline stopper ended the stream at tid {result.tid}")


def sorted_with_stop(results: dict[Any, dict[str, Any]]) -> list[dict[str, Any]]:
    """A seed-style callable that also carries a fail-fast check."""
    return [results[tid] for tid in sorted(results)]


sorted_with_stop.result_hook = StopAtFirstResult  # type: ignore[attr-defined]


def test_deferrable_false_runs_fail_fast_checks_of_a_callable(tls_conn: str) -> None:
    dag_run, pushed = run_one(
        "rs_inline_stop",
        commands=["echo one", "sleep 20", "echo three"],
        result_handler=sorted_with_stop,
        deferrable=False,
    )

    assert dag_run.state == "failed"
    assert pushed["results"] == [expected_row(1, "echo one", "one\n")]
    assert "inline stopper ended the stream at tid 1" in pushed["error_msg"]


# -- retries --


def test_retries_rerun_failed_commands_but_not_what_a_retry_cannot_fix(tls_conn: str) -> None:
    no_wait = datetime.timedelta(0)

    def build() -> None:
        operator(task_id="rc", commands=["exit 5"], retries=1, retry_delay=no_wait)
        operator(
            task_id="denied",
            commands=[f"echo {DENIED_MARKER}"],
            retries=1,
            retry_delay=no_wait,
        )
        operator(
            task_id="timeout",
            commands=["sleep 30"],
            stream_timeout=1.0,
            retries=1,
            retry_delay=no_wait,
        )

    dag_run = run_dag(make_dag("rs_retries", build))

    tries = {ti.task_id: ti.try_number for ti in dag_run.get_task_instances()}
    assert task_states(dag_run) == {"rc": "failed", "denied": "failed", "timeout": "failed"}
    assert tries == {"rc": 2, "denied": 1, "timeout": 1}


def test_deferrable_false_with_unusable_settings_reports_and_fails(
    set_conn: Callable[[str, str], None], tls_server: Any, tls_files: Any
) -> None:
    set_conn("remsvc_inline_typo", tls_uri(tls_server, tls_files) + "&usessl=1")

    dag_run, pushed = run_one(
        "rs_inline_typo",
        commands=["echo hi"],
        grpc_conn_id="remsvc_inline_typo",
        deferrable=False,
        retries=2,
    )

    assert dag_run.state == "failed"
    assert pushed["state"] == "FAILED"
    assert "usessl" in pushed["error_msg"]
    assert TOKEN not in pushed["error_msg"]
    (ti,) = dag_run.get_task_instances()
    assert ti.try_number == 1  # a settings mistake is not retried


def test_mapping_over_commands(tls_conn: str) -> None:
    from remsvc_provider.operators.remsvc import RemSvcOperator

    def build() -> None:
        RemSvcOperator.partial(task_id="batches", result_handler="sorted").expand(
            commands=[["echo a1", "echo a2"], [{"cmd": "echo b1"}]]
        )

    dag_run = run_dag(make_dag("rs_map_commands", build))

    assert task_states(dag_run) == {"batches[0]": "success", "batches[1]": "success"}
    first = xcom_value(dag_run, "batches", map_index=0)["results"]
    second = xcom_value(dag_run, "batches", map_index=1)["results"]
    assert [row["out"] for row in first] == ["a1\n", "a2\n"]
    assert [row["out"] for row in second] == ["b1\n"]
