"""Faults through real Airflow: ``dag.test()`` with the provider's deferrable operator.

The engine runs in the (inline) triggerer, the results come back to the worker, and
the task must fail with a message naming the tids that got no result, after pushing
every result that did arrive.
"""

from __future__ import annotations

from collections.abc import Iterator

import grpc
import pytest
from reliability_airflow import run_task
from reliability_checks import Arrivals, executions, reads_once, recorded

from remsvc_core import plugins

pytestmark = [
    pytest.mark.reliability,
    pytest.mark.airflow,
    pytest.mark.usefixtures("airflow_db"),
    pytest.mark.timeout(180),
]


@pytest.fixture
def global_plugin() -> Iterator[list[object]]:
    """Plugins registered process-wide (the trigger's stream picks them up), removed after."""
    registered: list[object] = []
    yield registered
    for plugin in registered:
        plugins.unregister_plugin(plugin)


def xcom_tids(pushed: dict) -> list[int]:
    return [row["tid"] for row in pushed["results"]]


def test_server_sigkilled_mid_stream_fails_the_task(
    server_process, scratch, set_conn, global_plugin, figures
):
    server = server_process()
    set_conn("rel_killed", f"remsvc://127.0.0.1:{server.port}")
    log = scratch / "ran"
    arrivals = Arrivals(at=2, action=server.kill)
    plugins.register_plugin(arrivals)
    global_plugin.append(arrivals)

    run = run_task(
        "rel_killed",
        commands=[recorded(log, tid, "sleep 0.3") for tid in range(1, 6)],
        grpc_conn_id="rel_killed",
        stream_timeout=60,
    )
    figures.fault("server SIGKILL (Airflow)")

    assert run.task_state == "failed"
    pushed = run.xcom()
    assert pushed["state"] == "FAILED"
    arrived = xcom_tids(pushed)
    assert set(arrivals.tids) <= set(arrived)
    figures.lost(len(arrivals.tids), len(set(arrivals.tids) - set(arrived)))
    missing = [tid for tid in range(1, 6) if tid not in arrived]
    assert missing
    assert arrived[:2] == [1, 2]
    message = pushed["error_msg"]
    assert f"no result for tid(s) {', '.join(map(str, missing))}" in message, message
    assert "stream ended with UNAVAILABLE" in message, message
    assert f"{len(arrived)} of 5 result(s) arrived and are kept" in message, message
    ran = executions(log)
    figures.executions(sum(ran.values()), sum(1 for c in ran.values() if c > 1))
    assert all(count == 1 for count in ran.values()), ran


def test_server_that_never_answers_fails_the_task_at_its_deadline(misbehaving, set_conn, figures):
    server = misbehaving(never_answer=True)
    set_conn("rel_silent", f"remsvc://{server.target}")

    run = run_task(
        "rel_silent",
        commands=["echo a", "echo b", "echo c"],
        grpc_conn_id="rel_silent",
        stream_timeout=2,
    )
    figures.fault("server never answers (Airflow)")

    assert run.task_state == "failed"
    pushed = run.xcom()
    assert pushed["state"] == "FAILED"
    assert pushed["results"] == []
    assert "no result for tid(s) 1, 2, 3" in pushed["error_msg"]
    assert "DEADLINE_EXCEEDED" in pushed["error_msg"]
    assert sorted(reads_once(server, figures)) == [1, 2, 3]


def test_misbehaving_server_fails_the_task_and_keeps_first_answers(
    misbehaving, set_conn, figures, caplog
):
    server = misbehaving(
        repeat_tids=frozenset({1}),
        unknown_tids=(99,),
        raw_out={2: b"ok \xff\n"},
        fail_after_answers=2,
        fail_code=grpc.StatusCode.INTERNAL,
        fail_details="server fell over",
    )
    set_conn("rel_rude", f"remsvc://{server.target}")

    run = run_task(
        "rel_rude",
        commands=["echo a", "echo b", "echo c", "echo d"],
        grpc_conn_id="rel_rude",
        stream_timeout=30,
    )
    figures.fault("repeated + unknown tid + invalid UTF-8 + failure (Airflow)")

    assert run.task_state == "failed"
    pushed = run.xcom()
    assert xcom_tids(pushed) == [1, 2]
    assert pushed["results"][0]["rc"] == 0, "a repeated tid must not replace the first answer"
    assert pushed["results"][0]["out"] == "ran echo a\n"
    assert pushed["results"][1]["out"] == "ok \ufffd\n"
    message = pushed["error_msg"]
    assert "no result for tid(s) 3, 4" in message, message
    assert "stream ended with INTERNAL: server fell over" in message, message
    # The protocol breaches do not fail a task by themselves (the contract's success
    # check is exit codes, missing tids and the status), but the trigger's log names them.
    logged = caplog.text
    assert "unexpected response (duplicate) for tid 1" in logged, logged[-2000:]
    assert "unexpected response (unknown) for tid 99" in logged, logged[-2000:]
    assert set(reads_once(server, figures)) <= {1, 2, 3, 4}
    figures.lost(2, 2 - len(pushed["results"]))
