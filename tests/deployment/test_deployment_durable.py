"""Durable batches and live output in a real Airflow deployment (issues 14 and 15).

Two triggerers over PostgreSQL, a reference server that keeps batches (TLS, a token).
Every command leaves a side effect on the host, so "ran once" is counted from the host;
commands that must still run while the test looks wait on a gate file.
"""

from __future__ import annotations

import datetime
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from deploy_airflow import TRIGGERER_HEALTH_THRESHOLD_S, AirflowDeployment
from deploy_remsvc import TASK_ID, connection_uri, launch_tls_server, start_deferred_run
from support.server_process import (
    ServerProcess,
    kill_orphaned_commands,
    process_gone,
    wait_for_pid_file,
    wait_until_gone,
)
from test_deployment_triggerers import gate_command, wait_for_lines

pytestmark = [pytest.mark.deployment, pytest.mark.slow, pytest.mark.timeout(480)]

DEFERRED_TIMEOUT_S = 120.0
FINISH_TIMEOUT_S = 180.0
FAILOVER_TIMEOUT_S = TRIGGERER_HEALTH_THRESHOLD_S * 3 + 60.0


def marked(records: Path, name: str, then: str = "") -> dict[str, str]:
    """A command that records its run in ``records/name.log``, then runs ``then``."""
    return {"cmd": f"echo ran >> {records}/{name}.log; {then} echo {name}"}


def runs(records: Path, name: str) -> int:
    path = records / f"{name}.log"
    return len(path.read_text().splitlines()) if path.exists() else 0


@pytest.fixture
def records(tmp_path: Path) -> Path:
    directory = tmp_path / "records"
    directory.mkdir()
    return directory


@pytest.fixture
def classic_conn_id(
    request: pytest.FixtureRequest, deployment: AirflowDeployment, tmp_path: Path, tls_files: Any
) -> Iterator[str]:
    """A connection to our server with every extension off: what the upstream server gives."""
    server = launch_tls_server(tmp_path / "classic-server", tls_files, extensions=frozenset())
    conn_id = f"remsvc_classic_{request.node.name[:30]}"
    deployment.add_connection(conn_id, connection_uri(server, tls_files))
    try:
        yield conn_id
    finally:
        server.close()


def _kill_holder_and_wait_for_the_other(
    deployment: AirflowDeployment, dag_id: str, run_id: str
) -> tuple[str, str]:
    api = deployment.api
    holder = api.wait_for_triggerer(dag_id, run_id, TASK_ID, DEFERRED_TIMEOUT_S)
    deployment.kill_triggerer(holder)
    taker = api.wait_for_triggerer(dag_id, run_id, TASK_ID, FAILOVER_TIMEOUT_S, other_than=holder)
    return holder, taker


def test_a_killed_triggerer_loses_nothing_and_runs_nothing_twice(
    deployment: AirflowDeployment,
    remsvc_conn_id: str,
    records: Path,
    tmp_path: Path,
    timings: Callable[[str, float], None],
) -> None:
    api = deployment.api
    dag_id = "remsvc_durable_failover"
    gate = tmp_path / "gate"
    commands = [
        marked(records, "first"),
        marked(records, "second", gate_command(gate) + ";"),
        marked(records, "third"),
    ]
    run_id = start_deferred_run(
        deployment, dag_id, remsvc_conn_id, commands, timeout=DEFERRED_TIMEOUT_S
    )
    wait_for_lines(records / "second.log", 1, DEFERRED_TIMEOUT_S)  # "second" runs now
    killed_at = time.monotonic()
    _holder, taker = _kill_holder_and_wait_for_the_other(deployment, dag_id, run_id)
    timings(
        "durable: triggerer SIGKILL -> other triggerer holds the batch",
        time.monotonic() - killed_at,
    )
    gate.touch()
    api.wait_for_task_state(dag_id, run_id, TASK_ID, {"success"}, FINISH_TIMEOUT_S)

    assert (runs(records, "first"), runs(records, "second"), runs(records, "third")) == (1, 1, 1)
    xcom = api.xcom(dag_id, run_id, TASK_ID)
    assert [(r["tid"], r["out"]) for r in xcom["results"]] == [
        (1, "first\n"),
        (2, "gate-opened\nsecond\n"),
        (3, "third\n"),
    ]
    log = api.task_log(dag_id, run_id, TASK_ID)
    assert "tid 1 rc=0 replayed" in log  # the re-attach, as the task log shows it
    replacement = deployment.start_triggerer()
    api.wait_for_alive_triggerers({taker, replacement}, DEFERRED_TIMEOUT_S)


def test_without_the_extension_delivery_is_at_least_once_and_the_log_says_so(
    deployment: AirflowDeployment, classic_conn_id: str, records: Path, tmp_path: Path
) -> None:
    api = deployment.api
    dag_id = "remsvc_durable_classic"
    gate = tmp_path / "gate"
    commands = [marked(records, "first"), marked(records, "second", gate_command(gate) + ";")]
    run_id = start_deferred_run(
        deployment, dag_id, classic_conn_id, commands, timeout=DEFERRED_TIMEOUT_S
    )
    wait_for_lines(records / "second.log", 1, DEFERRED_TIMEOUT_S)
    _holder, taker = _kill_holder_and_wait_for_the_other(deployment, dag_id, run_id)
    gate.touch()
    api.wait_for_task_state(dag_id, run_id, TASK_ID, {"success"}, FINISH_TIMEOUT_S)
    assert runs(records, "first") == 2  # the whole batch ran again: at least once
    log = api.task_log(dag_id, run_id, TASK_ID)
    notices = [line for line in log.splitlines() if "did not grant batch/1" in line]
    assert notices, log
    assert "at least once" in notices[0]
    replacement = deployment.start_triggerer()
    api.wait_for_alive_triggerers({taker, replacement}, DEFERRED_TIMEOUT_S)


def test_marking_the_task_failed_kills_the_remote_command(
    deployment: AirflowDeployment,
    remsvc_conn_id: str,
    records: Path,
    tmp_path: Path,
    timings: Callable[[str, float], None],
) -> None:
    """The batch would outlive a lost stream; a user's kill must not (Airflow 3.3 on_kill)."""
    api = deployment.api
    dag_id = "remsvc_durable_mark_failed"
    pid_file = tmp_path / "pid"
    commands = [{"cmd": f"echo $$ > {pid_file}; exec sleep 150"}, marked(records, "after")]
    run_id = start_deferred_run(
        deployment, dag_id, remsvc_conn_id, commands, timeout=DEFERRED_TIMEOUT_S
    )
    pid = wait_for_pid_file(pid_file, DEFERRED_TIMEOUT_S)
    marked_at = time.monotonic()
    api.set_task_state(dag_id, run_id, TASK_ID, "failed")
    assert wait_until_gone(pid, timeout=60), f"sleep {pid} still runs"
    timings("durable: task marked failed -> remote command gone", time.monotonic() - marked_at)
    time.sleep(2)  # long enough for a wrongly started next command to show
    assert runs(records, "after") == 0
    assert process_gone(pid)


def test_a_retry_with_on_retry_resume_runs_only_what_did_not_succeed(
    deployment: AirflowDeployment, remsvc_conn_id: str, records: Path, tmp_path: Path
) -> None:
    api = deployment.api
    dag_id = "remsvc_durable_resume"
    flag = tmp_path / "failed-once"
    commands = [
        marked(records, "first"),
        marked(records, "second"),
        marked(records, "third", f"if [ ! -e {flag} ]; then touch {flag}; exit 3; fi;"),
        marked(records, "fourth"),
    ]
    options = {
        "on_retry": "resume",
        "retries": 1,
        "retry_delay": datetime.timedelta(seconds=1),
    }
    run_id = start_deferred_run(
        deployment, dag_id, remsvc_conn_id, commands, timeout=DEFERRED_TIMEOUT_S, options=options
    )
    api.wait_for_task_state(
        dag_id, run_id, TASK_ID, {"success"}, FINISH_TIMEOUT_S * 2, passing={"up_for_retry"}
    )
    counts = [runs(records, name) for name in ("first", "second", "third", "fourth")]
    # Try 1 ran all four (the batch goes on past a failure); try 2 ran only the third,
    # the one that had not succeeded.
    assert counts == [1, 1, 2, 1], counts
    xcom = api.xcom(dag_id, run_id, TASK_ID)
    assert xcom["state"] == "SUCCESS"
    assert [(r["tid"], r["rc"]) for r in xcom["results"]] == [(1, 0), (2, 0), (3, 0), (4, 0)]
    second_try = api.task_log(dag_id, run_id, TASK_ID, try_number=2)
    assert (
        "Resuming: 3 command(s) succeeded in an earlier try and are not run again (tids 1, 2, 4)"
        in second_try
    )


@pytest.mark.parametrize("how", ["SIGKILL", "SIGTERM"])
def test_a_server_restarted_mid_batch_never_runs_a_command_twice(
    deployment: AirflowDeployment,
    request: pytest.FixtureRequest,
    tls_files: Any,
    records: Path,
    tmp_path: Path,
    how: str,
) -> None:
    """What survives: finished results are replayed; the running command is reported
    (interrupted after SIGKILL, killed by the stop after SIGTERM), never run again;
    commands not started run once. The task then fails on the reported command."""
    api = deployment.api
    state_dir = tmp_path / "batches"
    server = launch_tls_server(
        tmp_path / "server-1", tls_files, batch_state_dir=str(state_dir), drain_grace_ms=0
    )
    conn_id = f"remsvc_restart_{how.lower()}"
    deployment.add_connection(conn_id, connection_uri(server, tls_files))
    dag_id = f"remsvc_durable_restart_{how.lower()}"
    commands = [
        marked(records, "first"),
        marked(records, "second", "sleep 120;"),
        marked(records, "third"),
    ]
    restarted: ServerProcess | None = None
    try:
        run_id = start_deferred_run(
            deployment, dag_id, conn_id, commands, timeout=DEFERRED_TIMEOUT_S
        )
        wait_for_lines(records / "second.log", 1, DEFERRED_TIMEOUT_S)
        if how == "SIGKILL":
            server.kill()
        else:
            server.terminate()
        server.wait()
        restarted = launch_tls_server(
            tmp_path / "server-2", tls_files, batch_state_dir=str(state_dir), port=server.port
        )
        api.wait_for_task_state(
            dag_id, run_id, TASK_ID, {"failed", "up_for_retry"}, FINISH_TIMEOUT_S
        )
    finally:
        server.close()
        if restarted is not None:
            restarted.close()
        kill_orphaned_commands(str(records))  # a SIGKILLed server's "sleep 120" outlives it
    assert (runs(records, "first"), runs(records, "second"), runs(records, "third")) == (1, 1, 1)
    log = api.task_log(dag_id, run_id, TASK_ID)
    expected = "interrupted" if how == "SIGKILL" else "killed: the server was stopped"
    assert "tid 2 rc=137" in log, log
    assert expected in log, log


def test_live_output_reaches_the_task_log_while_the_task_is_deferred(
    deployment: AirflowDeployment,
    remsvc_conn_id: str,
    tmp_path: Path,
    timings: Callable[[str, float], None],
) -> None:
    api = deployment.api
    dag_id = "remsvc_live_output"
    gate, printed = tmp_path / "gate", tmp_path / "printed-at"
    ticker = (
        "for i in 1 2 3 4 5; do echo tick $i; date +%s.%N >> "
        + str(printed)
        + "; sleep 1; done; "
        + gate_command(gate)
    )
    run_id = start_deferred_run(
        deployment, dag_id, remsvc_conn_id, [{"cmd": ticker}], timeout=DEFERRED_TIMEOUT_S
    )
    log = api.wait_for_log(dag_id, run_id, TASK_ID, "[tid 1] tick 1", DEFERRED_TIMEOUT_S)
    seen_at = time.time()
    first_printed = float(printed.read_text().split()[0])
    timings("live output: printed -> in the task log through the API", seen_at - first_printed)
    assert api.task_instance(dag_id, run_id, TASK_ID)["state"] == "deferred"
    assert "[tid 1] tick 1" in log
    gate.touch()
    api.wait_for_task_state(dag_id, run_id, TASK_ID, {"success"}, FINISH_TIMEOUT_S)
    final = api.task_log(dag_id, run_id, TASK_ID)
    assert all(f"[tid 1] tick {n}" in final for n in range(1, 6))
    assert "tid 1 rc=0" in final  # the progress line, after the output
