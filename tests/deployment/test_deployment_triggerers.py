"""RemSvcOperator in a real Airflow deployment: scheduler, DAG processor, api-server
and two triggerers as separate processes over PostgreSQL, driven through the REST API.

Commands that must still be running while the test looks wait on a *gate* file the
test creates when it is done looking, so no assertion depends on how fast anything is.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import pytest
from deploy_airflow import TRIGGERER_HEALTH_THRESHOLD_S, AirflowDeployment
from deploy_remsvc import SERVER_TOKEN, TASK_ID, start_deferred_run
from support.server_process import ServerProcess, process_gone, wait_for_pid_file, wait_until_gone

pytestmark = [pytest.mark.deployment, pytest.mark.slow, pytest.mark.timeout(420)]

TRIGGER_CLASSPATH = "remsvc_provider.triggers.remsvc.RemSvcTrigger"
# Generous bounds: a 2-core machine shared with other work starts a task process slowly.
DEFERRED_TIMEOUT_S = 120.0
FINISH_TIMEOUT_S = 120.0
FAILOVER_TIMEOUT_S = TRIGGERER_HEALTH_THRESHOLD_S * 3 + 60.0
GATE_WAIT_TENTHS = 1200  # a gate command gives up after 120 s


def gate_command(gate: Path) -> str:
    """A shell command that ends (rc 0) once ``gate`` exists; bounded by GATE_WAIT_TENTHS."""
    return (
        f"i=0; while [ ! -e {gate} ] && [ $i -lt {GATE_WAIT_TENTHS} ]; "
        f"do sleep 0.1; i=$((i+1)); done; test -e {gate} && echo gate-opened"
    )


def wait_for_lines(path: Path, count: int, timeout: float) -> list[str]:
    """Wait (bounded) until ``path`` holds at least ``count`` lines; return them."""
    deadline = time.monotonic() + timeout
    while True:
        lines = path.read_text().splitlines() if path.exists() else []
        if len(lines) >= count:
            return lines
        if time.monotonic() >= deadline:
            raise AssertionError(f"{path} has {len(lines)} line(s) after {timeout:.0f}s")
        time.sleep(0.1)


def test_deferred_task_runs_in_a_triggerer_and_reports_through_the_api(
    deployment: AirflowDeployment,
    remsvc_conn_id: str,
    remsvc_server: ServerProcess,
    tmp_path: Path,
    timings: Callable[[str, float], None],
) -> None:
    api = deployment.api
    dag_id = "remsvc_deployment_proof"
    gate = tmp_path / "gate"
    commands = [
        {"cmd": "echo {{ dag_run.conf['greeting'] }}"},
        {"cmd": gate_command(gate)},
        {"cmd": "echo after the gate"},
    ]
    started = time.monotonic()
    run_id = start_deferred_run(
        deployment,
        dag_id,
        remsvc_conn_id,
        commands,
        conf={"greeting": "hello-from-conf"},
        timeout=DEFERRED_TIMEOUT_S,
    )
    timings("DAG written -> task deferred", time.monotonic() - started)

    holder = api.wait_for_triggerer(dag_id, run_id, TASK_ID, DEFERRED_TIMEOUT_S)
    assert holder in deployment.triggerers, (
        f"{holder} is not one of {sorted(deployment.triggerers)}"
    )
    # The database says the same as the API: this task's trigger, held by `holder`.
    trigger_id = api.task_instance(dag_id, run_id, TASK_ID)["trigger"]["id"]
    row = next(row for row in deployment.triggers() if row.id == trigger_id)
    assert (row.classpath, row.triggerer_hostname) == (TRIGGER_CLASSPATH, holder)

    # The gate is shut, so the task is certainly still deferred while its log is read.
    log = api.wait_for_log(dag_id, run_id, TASK_ID, "Streaming 3 command(s)", DEFERRED_TIMEOUT_S)
    assert api.task_instance(dag_id, run_id, TASK_ID)["state"] == "deferred"
    assert f"to localhost:{remsvc_server.port}, TLS, bearer token" in log

    gate.touch()
    api.wait_for_task_state(dag_id, run_id, TASK_ID, {"success"}, FINISH_TIMEOUT_S)
    api.wait_for_run_state(dag_id, run_id, {"success"}, FINISH_TIMEOUT_S)
    timings("DAG written -> run succeeded", time.monotonic() - started)

    xcom = api.xcom(dag_id, run_id, TASK_ID)
    assert xcom["state"] == "SUCCESS"
    assert xcom["error_msg"] is None
    assert [(r["tid"], r["rc"], r["out"]) for r in xcom["results"]] == [
        (1, 0, "hello-from-conf\n"),
        (2, 0, "gate-opened\n"),
        (3, 0, "after the gate\n"),
    ]
    assert xcom["results"][0]["cmd"] == "echo hello-from-conf"  # rendered from the run's conf

    final_log = api.task_log(dag_id, run_id, TASK_ID)
    assert "All 3 command(s) succeeded" in final_log
    assert SERVER_TOKEN not in final_log
    # Every component's output and every task and trigger log, the CLI that stored it too.
    texts = deployment.log_texts()
    assert any(".log.trigger." in path for path in texts), "the scan must cover trigger logs"
    leaked = [path for path, text in texts.items() if SERVER_TOKEN in text]
    assert not leaked, f"the bearer token is in {leaked}"


def test_killed_triggerer_hands_its_deferred_task_to_the_other(
    deployment: AirflowDeployment,
    remsvc_conn_id: str,
    tmp_path: Path,
    timings: Callable[[str, float], None],
) -> None:
    api = deployment.api
    dag_id = "remsvc_deployment_failover"
    gate, records = tmp_path / "gate", tmp_path / "records"
    records.mkdir()
    commands = [
        {"cmd": f"echo ran >> {records}/first.log && echo first"},
        {"cmd": f"echo ran >> {records}/second.log; {gate_command(gate)}"},
    ]
    run_id = start_deferred_run(
        deployment, dag_id, remsvc_conn_id, commands, timeout=DEFERRED_TIMEOUT_S
    )
    holder = api.wait_for_triggerer(dag_id, run_id, TASK_ID, DEFERRED_TIMEOUT_S)
    wait_for_lines(records / "second.log", 1, DEFERRED_TIMEOUT_S)  # running under `holder`

    killed_at = time.monotonic()
    deployment.kill_triggerer(holder)
    taker = api.wait_for_triggerer(dag_id, run_id, TASK_ID, FAILOVER_TIMEOUT_S, other_than=holder)
    timings("triggerer SIGKILL -> other triggerer holds the trigger", time.monotonic() - killed_at)
    assert taker in deployment.triggerers
    alive = {job["hostname"] for job in api.triggerer_jobs()}
    assert holder not in alive, alive
    assert taker in alive, alive

    gate.touch()
    api.wait_for_task_state(dag_id, run_id, TASK_ID, {"success"}, FINISH_TIMEOUT_S)
    timings("triggerer SIGKILL -> task succeeded", time.monotonic() - killed_at)

    xcom = api.xcom(dag_id, run_id, TASK_ID)
    assert xcom["state"] == "SUCCESS"
    assert [(r["tid"], r["rc"], r["out"]) for r in xcom["results"]] == [
        (1, 0, "first\n"),
        (2, 0, "gate-opened\n"),
    ]
    # Both triggerers ran the trigger; each wrote its own part of the task's log.
    job_ids = {job["hostname"]: job["id"] for job in api.triggerer_jobs(alive_only=False)}
    log = api.task_log(dag_id, run_id, TASK_ID)
    for hostname in (holder, taker):
        assert f"attempt=1.log.trigger.{job_ids[hostname]}.log" in log, (hostname, log)
    # Delivery is at least once today: the new triggerer runs the whole batch again.
    runs = {name: wait_for_lines(records / f"{name}.log", 1, 0) for name in ("first", "second")}
    print(f"runs of each command, failover included: { {k: len(v) for k, v in runs.items()} }")

    # Back to two triggerers for whatever runs next.
    replacement = deployment.start_triggerer()
    api.wait_for_alive_triggerers({taker, replacement}, DEFERRED_TIMEOUT_S)


def test_marking_a_deferred_task_failed_stops_its_remote_command(
    deployment: AirflowDeployment,
    remsvc_conn_id: str,
    tmp_path: Path,
    timings: Callable[[str, float], None],
) -> None:
    api = deployment.api
    dag_id = "remsvc_deployment_mark_failed"
    pid_file = tmp_path / "pid"
    # exec: the pid the shell writes is the pid of the sleep that replaces it.
    commands = [{"cmd": f"echo $$ > {pid_file}; exec sleep 150"}]
    run_id = start_deferred_run(
        deployment, dag_id, remsvc_conn_id, commands, timeout=DEFERRED_TIMEOUT_S
    )
    pid = wait_for_pid_file(pid_file, DEFERRED_TIMEOUT_S)
    assert not process_gone(pid)

    marked_at = time.monotonic()
    api.set_task_state(dag_id, run_id, TASK_ID, "failed")
    assert wait_until_gone(pid, timeout=FINISH_TIMEOUT_S), f"sleep {pid} still runs"
    timings("task marked failed -> remote command gone", time.monotonic() - marked_at)
    assert api.task_instance(dag_id, run_id, TASK_ID)["state"] == "failed"
    api.wait_for_run_state(dag_id, run_id, {"failed"}, FINISH_TIMEOUT_S)
