"""RemSvcTrigger on its own: what it stores, what it fires, and cancellation."""

from __future__ import annotations

import asyncio
import datetime
import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import psutil
import pytest
from airflow_runs import TOKEN, run_dag, xcom_value

from remsvc_core.handlers import refresh_handlers

pytestmark = [pytest.mark.airflow, pytest.mark.usefixtures("airflow_db")]

SetConn = Callable[[str, str], None]
WAIT_S = 20.0


def make_trigger(**kwargs: Any) -> Any:
    from remsvc_provider.triggers.remsvc import RemSvcTrigger

    kwargs.setdefault("commands", [{"cmd": "echo hi", "cmdtyp": 0, "cmdusr": "", "src": "s"}])
    return RemSvcTrigger(**kwargs)


async def first_event(trigger: Any) -> Any:
    return await anext(trigger.run())


def test_serialized_arguments_round_trip_and_hold_no_secret(tls_conn: str) -> None:
    from airflow_runs import deserialize, serialize

    from remsvc_provider.triggers.remsvc import RemSvcTrigger

    trigger = make_trigger(
        grpc_conn_id=tls_conn,
        stream_timeout=120,
        metadata=[("x-team", "ops")],
        result_handler=["verify_hash"],
    )

    classpath, kwargs = trigger.serialize()
    rebuilt = RemSvcTrigger(**deserialize(serialize(kwargs)))

    assert classpath == "remsvc_provider.triggers.remsvc.RemSvcTrigger"
    assert rebuilt.serialize() == (classpath, kwargs)
    assert kwargs["grpc_conn_id"] == "remsvc_default"
    assert kwargs["stream_timeout"] == 120.0
    assert TOKEN not in json.dumps(kwargs)
    assert TOKEN not in repr(trigger)


def test_event_carries_the_outcome_as_json(tls_conn: str) -> None:
    from remsvc_core.results import StreamOutcome

    event = asyncio.run(first_event(make_trigger(grpc_conn_id=tls_conn)))

    assert event.payload["status"] == "complete"
    json.dumps(event.payload)  # JSON-safe as it is, for the metadata database
    outcome = StreamOutcome.from_json(event.payload["outcome"])
    assert outcome.complete
    assert outcome.results[1].out == "hi\n"
    assert TOKEN not in json.dumps(event.payload)


def test_a_1_0_0_era_serialization_still_rebuilds(tls_conn: str) -> None:
    """What a trigger row of an older version holds (no result_handler): a rollback or
    an upgrade mid-run must rebuild it, so new arguments keep their defaults."""
    from remsvc_provider.triggers.remsvc import RemSvcTrigger

    stored = {
        "commands": [{"cmd": "echo old", "cmdtyp": 0, "cmdusr": "", "src": ""}],
        "grpc_conn_id": tls_conn,
        "stream_timeout": 60.0,
        "metadata": [],
    }

    event = asyncio.run(first_event(RemSvcTrigger(**stored)))

    assert event.payload["status"] == "complete"
    assert event.payload["outcome"]["results"][0]["out"] == "old\n"


def test_the_event_logs_as_a_summary_and_carries_every_output(
    tls_conn: str, caplog: pytest.LogCaptureFixture, capfd: pytest.CaptureFixture[str]
) -> None:
    """Airflow's triggerer logs ``"Trigger fired event", result=<event>``: the event's
    repr goes into the triggerer's and the task's log. Outputs belong in XCom."""
    from remsvc_core.results import StreamOutcome

    big = "python3 -c \"print('x' * 200000)\""
    commands = [{"cmd": big}, {"cmd": "echo small"}, {"cmd": "exit 4"}]

    with caplog.at_level("INFO"):
        event = asyncio.run(first_event(make_trigger(grpc_conn_id=tls_conn, commands=commands)))
    captured = capfd.readouterr()
    logged = caplog.text + captured.out + captured.err

    as_logged = json.dumps({"event": "Trigger fired event", "result": event}, default=repr)
    assert len(as_logged) < 500, as_logged
    assert "xxxxxxxxxx" not in as_logged
    assert "3 of 3 result(s)" in as_logged
    outcome = StreamOutcome.from_json(json.loads(json.dumps(event.payload))["outcome"])
    assert outcome.results[1].out == "x" * 200000 + "\n"  # whole, for the task's XCom
    assert [outcome.results[tid].rc for tid in (1, 2, 3)] == [0, 0, 4]
    closing = [line for line in logged.splitlines() if "closed:" in line]
    assert closing, logged
    assert "1 with a non-zero exit code" in closing[-1]
    assert "ended with OK" not in logged


def test_unknown_connection_fires_an_error_event() -> None:
    event = asyncio.run(first_event(make_trigger(grpc_conn_id="remsvc_missing_conn")))

    assert event.payload["status"] == "error"
    assert "remsvc_missing_conn" in event.payload["message"]


def test_bad_settings_fire_an_error_event_without_the_token(set_conn: SetConn) -> None:
    set_conn("remsvc_badca", f"remsvc://localhost:1?ca_cert_path=/x&bearer_token={TOKEN}")

    event = asyncio.run(first_event(make_trigger(grpc_conn_id="remsvc_badca")))

    assert event.payload["status"] == "error"
    assert event.payload["error_type"] == "SettingsError"
    assert "TLS is off" in event.payload["message"]
    assert TOKEN not in json.dumps(event.payload)


def sleepers(server_pid: int, marker: str) -> list[psutil.Process]:
    """Processes the server started for our command (found by a unique argument)."""
    found = []
    for child in psutil.Process(server_pid).children(recursive=True):
        try:
            if any(marker in part for part in child.cmdline()):
                found.append(child)
        except psutil.NoSuchProcess:
            continue
    return found


def test_cancelling_the_trigger_kills_the_command_on_the_server(
    server_process: Callable[..., Any], tls_files: Any, set_conn: SetConn
) -> None:
    """What the triggerer does when the task is marked failed or cleared: it cancels
    the trigger's run. The stream must be cancelled and the command killed."""
    server = server_process(
        tls_enabled=True,
        tls_cert=tls_files.server_cert,
        tls_key=tls_files.server_key,
        auth={"airflow": TOKEN},
    )
    extra = {"use_ssl": True, "ca_cert_path": tls_files.ca_cert, "bearer_token": TOKEN}
    set_conn("remsvc_cancel", f"remsvc://localhost:{server.port}?__extra__={json.dumps(extra)}")
    marker = "297.25"  # a sleep length nothing else uses
    trigger = make_trigger(grpc_conn_id="remsvc_cancel", commands=[{"cmd": f"sleep {marker}"}])

    async def scenario() -> None:
        running = asyncio.ensure_future(first_event(trigger))
        deadline = time.monotonic() + WAIT_S
        while not sleepers(server.pid, marker):
            assert not running.done(), running.result()
            assert time.monotonic() < deadline, "the command never started on the server"
            await asyncio.sleep(0.05)
        running.cancel()
        with pytest.raises(asyncio.CancelledError):
            await running
        # Still inside the loop: nothing but the cancellation itself may stop the command
        # (asyncio.run's shutdown would cancel leftovers and hide a stream left running).
        deadline = time.monotonic() + WAIT_S
        while sleepers(server.pid, marker):
            assert time.monotonic() < deadline, "the command survived the cancellation"
            await asyncio.sleep(0.05)

    asyncio.run(scenario())

    assert server.returncode is None  # the server itself carries on


# -- fail-fast checks of a handler run in the triggerer --


@pytest.fixture
def stop_after_first_handler(tmp_path: Path) -> Iterator[str]:
    """A handler distribution, installed the way pip would (dist-info + entry point),
    whose result_hook ends the stream after the first result."""
    import sys

    site = tmp_path / "site"
    info = site / "remsvc_stopper-0.1.0.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: remsvc-stopper\nVersion: 0.1.0\n")
    (info / "entry_points.txt").write_text(
        "[remsvc.handlers]\nstop_after_first = remsvc_stopper:stop_after_first\n"
    )
    (site / "remsvc_stopper.py").write_text(
        "from remsvc_core.errors import StopStream\n"
        "from remsvc_core.handlers import result_handler\n"
        "from remsvc_core.hookspecs import hookimpl\n"
        "\n"
        "class StopAfterFirst:\n"
        "    @hookimpl\n"
        "    def remsvc_result(self, result, stream):\n"
        "        raise StopStream(f'stopper saw tid {result.tid} and ended the stream')\n"
        "\n"
        "@result_handler(result_hook=lambda: StopAfterFirst())\n"
        "def stop_after_first(results):\n"
        "    return sorted(results.values(), key=lambda row: row['tid'])\n"
    )
    sys.path.insert(0, str(site))
    refresh_handlers()
    try:
        yield "stop_after_first"
    finally:
        sys.path.remove(str(site))
        sys.modules.pop("remsvc_stopper", None)
        refresh_handlers()


def test_handler_result_hooks_run_in_the_triggerer(
    tls_conn: str, stop_after_first_handler: str
) -> None:
    from airflow.sdk import DAG

    from remsvc_provider.operators.remsvc import RemSvcOperator

    with DAG("rs_fail_fast", schedule=None, start_date=datetime.datetime(2024, 1, 1)) as dag:
        RemSvcOperator(
            task_id="run",
            commands=["echo first", "sleep 20; echo second", "echo third"],
            result_handler=stop_after_first_handler,
        )

    dag_run = run_dag(dag)
    pushed = xcom_value(dag_run, "run")

    assert dag_run.state == "failed"
    assert [row["tid"] for row in pushed["results"]] == [1]
    assert "stopper saw tid 1" in pushed["error_msg"]
    assert "no result for tid(s) 2, 3" in pushed["error_msg"]


# -- lineage --


def test_openlineage_facets_name_the_server_and_the_commands(tls_conn: str) -> None:
    """The OpenLineage provider's own extractor reads the operator's facets after the
    task resumed from a real trigger event."""
    pytest.importorskip("airflow.providers.openlineage")
    from airflow.providers.openlineage.extractors.base import DefaultExtractor
    from openlineage.client.serde import Serde

    from remsvc_core.hashing import command_hash
    from remsvc_provider.operators.remsvc import RemSvcOperator

    commands = [{"cmd": "echo lineage"}, {"cmd": "exit 0"}]
    operator = RemSvcOperator(task_id="lineage", commands=commands)
    trigger = make_trigger(grpc_conn_id=tls_conn, commands=commands)
    event = asyncio.run(first_event(trigger))

    # The context's task instance is a stand-in with the fields execute_complete reads
    # (it names the batch from them); the trigger, its server and the event are real.
    ti = SimpleNamespace(
        dag_id="lineage_dag", task_id="lineage", run_id="manual__1", try_number=1, map_index=-1
    )
    before = DefaultExtractor(operator).extract_on_complete(None)
    pushed = operator.execute_complete({"ti": ti}, event.payload)
    lineage = DefaultExtractor(operator).extract_on_complete(None)

    assert before is None  # nothing ran yet: nothing to say
    assert pushed["state"] == "SUCCESS"
    facet = json.loads(Serde.to_json(lineage.run_facets["remsvc"]))
    assert facet["namespace"].startswith("remsvc://localhost:")
    assert facet["commandHashes"] == [command_hash("echo lineage"), command_hash("exit 0")]
    assert (facet["commands"], facet["results"], facet["failed"]) == (2, 2, 0)
    assert facet["status"] == "OK"
    assert "lineage\n" not in json.dumps(facet)  # no outputs, no command text
