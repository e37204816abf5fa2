"""``output_dir``: outputs past 8 MiB are kept as files, not in the trigger event or XCom.

Real ``dag.test()`` runs (the trigger runs inline, as in a triggerer) against a real
TLS server whose output cap allows big outputs; the files are checked byte for byte
against the SHA-256 the results carry.
"""

from __future__ import annotations

import datetime
import hashlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from airflow_runs import IDENTITY, TOKEN, raw_xcom_texts, run_dag, tls_uri, xcom_value

pytestmark = [pytest.mark.airflow, pytest.mark.usefixtures("airflow_db")]

START = datetime.datetime(2024, 1, 1, tzinfo=datetime.timezone.utc)
BIG = 12_000_000  # past the 8 MiB spill threshold
BIG_CMD = f"head -c {BIG} /dev/zero | tr '\\0' x"


@pytest.fixture(scope="module")
def roomy_server(tls_files: Any, system_roots: Path) -> Iterator[Any]:
    from remsvc_core.server.embedded import EmbeddedServer

    with EmbeddedServer(
        port=0,
        tls_enabled=True,
        tls_cert=tls_files.server_cert,
        tls_key=tls_files.server_key,
        auth={IDENTITY: TOKEN},
        output_cap_bytes=64 << 20,
    ) as server:
        yield server


@pytest.fixture
def roomy_conn(set_conn: Callable[[str, str], None], roomy_server: Any, tls_files: Any) -> str:
    set_conn("remsvc_roomy", tls_uri(roomy_server, tls_files))
    return "remsvc_roomy"


def run_one(dag_id: str, **kwargs: Any) -> tuple[Any, dict[str, Any]]:
    from airflow.sdk import DAG

    from remsvc_provider.operators.remsvc import RemSvcOperator

    with DAG(dag_id, schedule=None, start_date=START, catchup=False) as dag:
        RemSvcOperator(task_id="run", **kwargs)
    dag_run = run_dag(dag)
    return dag_run, xcom_value(dag_run, "run")


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def test_a_big_output_is_a_file_in_the_tasks_folder_and_xcom_names_it(
    roomy_conn: str, tmp_path: Path
) -> None:
    outputs = tmp_path / "outputs"
    dag_run, pushed = run_one(
        "rs_big_local",
        grpc_conn_id=roomy_conn,
        commands=[BIG_CMD, "echo small"],
        output_dir=str(outputs),
        deferrable=True,
    )

    assert dag_run.state == "success", pushed
    big, small = pushed["results"]
    kept = Path(big["out_file"])
    # One folder per task try: dag, run, task, try.
    assert kept.parent.parent.parent.parent == outputs / "rs_big_local"
    assert kept.name == "tid1.stdout"
    assert kept.parent.name == "try1"
    assert big["out"] == ""
    assert kept.stat().st_size == BIG
    assert big["out_sha256"] == sha256_of(kept)
    assert kept.read_bytes()[:5] == b"xxxxx"
    assert small["out"] == "small\n"
    assert "out_file" not in small
    # Nothing else was left beside it: the engine's temporary name was renamed.
    assert sorted(p.name for p in kept.parent.iterdir()) == ["tid1.stdout"]
    # The megabytes stayed out of XCom (and so out of the trigger event before it).
    assert max(len(text) for text in raw_xcom_texts(dag_run)) < 10_000


def test_an_object_storage_url_works_on_the_worker_too(roomy_conn: str, tmp_path: Path) -> None:
    """``file://`` stands in for s3:// or gs://: the same ObjectStoragePath code path."""
    from airflow.sdk import ObjectStoragePath

    store = tmp_path / "store"
    store.mkdir()
    dag_run, pushed = run_one(
        "rs_big_url",
        grpc_conn_id=roomy_conn,
        commands=[f"{BIG_CMD} >&2; echo done"],
        output_dir=f"file://{store}",
        deferrable=False,
    )

    assert dag_run.state == "success", pushed
    (result,) = pushed["results"]
    assert result["out"] == "done\n"
    assert result["err"] == ""
    assert result["err_file"].startswith("file://")
    kept = ObjectStoragePath(result["err_file"])
    with kept.open("rb") as handle:
        data = handle.read()
    assert len(data) == BIG
    assert hashlib.sha256(data).hexdigest() == result["err_sha256"]
    assert str(store) in result["err_file"]


def test_the_dataframe_handler_names_the_file_instead_of_loading_it(
    roomy_conn: str, tmp_path: Path
) -> None:
    dag_run, pushed = run_one(
        "rs_big_frame",
        grpc_conn_id=roomy_conn,
        commands=[BIG_CMD],
        output_dir=str(tmp_path),
        result_handler="dataframe",
    )

    assert dag_run.state == "success"
    frame = pushed["results"]
    assert frame.loc[0, "out"] == ""
    assert Path(frame.loc[0, "out_file"]).stat().st_size == BIG


@pytest.mark.parametrize("bad", ["", "   ", 5])
def test_an_unusable_output_dir_fails_when_the_dag_is_parsed(bad: Any) -> None:
    from airflow.exceptions import AirflowException

    from remsvc_provider.operators.remsvc import RemSvcOperator

    with pytest.raises(AirflowException, match="output_dir must be a directory path or an"):
        RemSvcOperator(task_id="bad", commands=["true"], output_dir=bad)


def test_output_dir_is_serialized_only_when_set() -> None:
    """A trigger without it can still be rebuilt by 1.0.0 (a rollback)."""
    from remsvc_provider.triggers.remsvc import RemSvcTrigger

    _, plain = RemSvcTrigger(commands=[{"cmd": "true"}]).serialize()
    _, kept = RemSvcTrigger(commands=[{"cmd": "true"}], output_dir="s3://b/p").serialize()
    assert "output_dir" not in plain
    assert kept["output_dir"] == "s3://b/p"
    assert RemSvcTrigger(**kept).output_dir == "s3://b/p"


def test_a_store_that_cannot_be_written_loses_nothing(roomy_conn: str) -> None:
    """The upload fails (no such storage scheme): the output stays on the host that ran
    the stream, the result names it there, and the task log says so."""
    dag_run, pushed = run_one(
        "rs_big_unwritable",
        grpc_conn_id=roomy_conn,
        commands=[BIG_CMD],
        output_dir="nosuchstore://bucket/remsvc",
        deferrable=False,
    )

    assert dag_run.state == "success", pushed
    (result,) = pushed["results"]
    kept = Path(result["out_file"])
    try:
        assert kept.stat().st_size == BIG
        assert result["out_sha256"] == sha256_of(kept)
    finally:
        kept.unlink(missing_ok=True)
        kept.parent.rmdir()
