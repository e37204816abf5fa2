"""A fan-out in a real deployment (issue 16): one trigger streams to many hosts, and a
triggerer killed mid-fan-out loses nothing and runs nothing twice, host by host.

The hosts are simulated (one process of reference servers on loopback addresses that
keep batches); every command leaves a line in a record file, so "ran once on every
host" is counted from the hosts' side.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from deploy_airflow import TRIGGERER_HEALTH_THRESHOLD_S, AirflowDeployment
from deploy_remsvc import TASK_ID
from support.server_group import ServerGroup, launch_group
from test_deployment_durable import marked, runs
from test_deployment_triggerers import gate_command, wait_for_lines

pytestmark = [pytest.mark.deployment, pytest.mark.slow, pytest.mark.timeout(480)]

HOSTS = 4
DEFERRED_TIMEOUT_S = 120.0
FINISH_TIMEOUT_S = 180.0
FAILOVER_TIMEOUT_S = TRIGGERER_HEALTH_THRESHOLD_S * 3 + 60.0

_DAG = '''\
"""Written by tests/deployment: one RemSvcFleetOperator task."""

import datetime

from airflow.sdk import DAG

from remsvc_provider.operators.fleet import RemSvcFleetOperator

with DAG({dag_id!r}, schedule=None, catchup=False,
         start_date=datetime.datetime(2024, 1, 1, tzinfo=datetime.timezone.utc)):
    RemSvcFleetOperator(task_id={task_id!r}, grpc_conn_ids={hosts!r}, commands={commands!r})
'''


@pytest.fixture
def fleet_hosts(tmp_path: Path) -> Iterator[ServerGroup]:
    config = (
        "[server]\ncmd_timeout_ms = 180000\n[log]\nlevel = warning\n"
        f"[batches]\nstate_dir = {tmp_path / 'batches'}\n"
    )
    group = launch_group(tmp_path / "hosts", HOSTS, "127.0.200.1", config_text=config)
    try:
        yield group
    finally:
        group.close()


def test_a_killed_triggerer_mid_fan_out_re_attaches_host_by_host(
    deployment: AirflowDeployment,
    fleet_hosts: ServerGroup,
    tmp_path: Path,
    timings: Callable[[str, float], None],
) -> None:
    api = deployment.api
    records = tmp_path / "records"
    records.mkdir()
    gate = tmp_path / "gate"
    hosts = {f"web{n}": f"remsvc_fleet_web{n}" for n in range(1, HOSTS + 1)}
    deployment.add_connections(
        {conn: f"remsvc://{target}" for conn, target in zip(hosts.values(), fleet_hosts.targets,
                                                              strict=True)}
    )  # fmt: skip
    commands = [
        marked(records, "first"),
        marked(records, "second", gate_command(gate) + ";"),
        marked(records, "third"),
    ]
    dag_id = "remsvc_fleet_failover"
    source = _DAG.format(dag_id=dag_id, task_id=TASK_ID, hosts=hosts, commands=commands)
    deployment.deploy_dag(dag_id, source)
    run_id = api.trigger(dag_id)
    wait_for_lines(records / "second.log", HOSTS, DEFERRED_TIMEOUT_S)  # every host at the gate

    holder = api.wait_for_triggerer(dag_id, run_id, TASK_ID, DEFERRED_TIMEOUT_S)
    killed_at = time.monotonic()
    deployment.kill_triggerer(holder)
    taker = api.wait_for_triggerer(dag_id, run_id, TASK_ID, FAILOVER_TIMEOUT_S, other_than=holder)
    timings("fan-out: triggerer SIGKILL -> other triggerer holds it", time.monotonic() - killed_at)
    gate.touch()
    api.wait_for_task_state(dag_id, run_id, TASK_ID, {"success"}, FINISH_TIMEOUT_S)

    # Once per host, never twice, although the fan-out was started again.
    assert [runs(records, name) for name in ("first", "second", "third")] == [HOSTS] * 3
    xcom = api.xcom(dag_id, run_id, TASK_ID)
    assert xcom["state"] == "SUCCESS"
    assert {host: entry["state"] for host, entry in xcom["hosts"].items()} == dict.fromkeys(
        hosts, "SUCCESS"
    )
    assert [(r["host"], r["tid"]) for r in xcom["results"]] == [
        (host, tid) for host in hosts for tid in (1, 2, 3)
    ]
    log = api.task_log(dag_id, run_id, TASK_ID)
    for host in hosts:
        assert f"{host} tid 1 rc=0 replayed" in log  # the re-attach, host by host
    replacement = deployment.start_triggerer()
    api.wait_for_alive_triggerers({taker, replacement}, DEFERRED_TIMEOUT_S)
