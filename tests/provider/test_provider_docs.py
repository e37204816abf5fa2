"""docs/dag-authors.md says what runs: its DAGs parse (and some run), and every
connection string it shows reaches a real server once its placeholders are filled in."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from airflow_runs import TOKEN, run_dag, task_states, tls_uri, xcom_value

from remsvc_core.hostlist import RANGE_DASH
from remsvc_provider.hooks.remsvc import RemSvcHook

pytestmark = [pytest.mark.airflow, pytest.mark.usefixtures("airflow_db")]

DOC = Path(__file__).resolve().parents[2] / "docs" / "dag-authors.md"
FENCE = re.compile(r"^```(\w+)([^\n]*)\n(.*?)^```", re.MULTILINE | re.DOTALL)
EXPORT = re.compile(r"^export AIRFLOW_CONN_(\w+)='(.*)'$", re.MULTILINE)

# Placeholders in the doc and what the tests put in their place.
DOC_HOST = "remsvc-host.example.com:50051"
DOC_TOKEN = "secret-prod-token"
DOC_PATHS = {
    "/etc/ssl/remsvc-ca.pem": "ca_cert",
    "/etc/ssl/remsvc-client.pem": "client_cert",
    "/etc/ssl/remsvc-client.key": "client_key",
}


def blocks(lang: str) -> list[tuple[str, str]]:
    """``(tags, text)`` of every fenced block in the doc with this language."""
    text = DOC.read_text(encoding="utf-8")
    return [(m.group(2).strip(), m.group(3)) for m in FENCE.finditer(text) if m.group(1) == lang]


def dag_blocks() -> list[str]:
    return [text for tags, text in blocks("python") if "no-run" not in tags and "DAG(" in text]


def documented_connections() -> list[str]:
    found = []
    for tags, text in blocks("bash"):
        if "no-run" not in tags:
            found.extend(match.group(2) for match in EXPORT.finditer(text))
    return found


def test_the_doc_has_examples_to_test() -> None:
    assert len(dag_blocks()) >= 4
    assert len(documented_connections()) >= 7


@pytest.fixture(scope="module")
def doc_bag(tmp_path_factory: pytest.TempPathFactory) -> Any:
    from airflow_runs import dag_bag_api

    DagBag, _ = dag_bag_api()

    folder = tmp_path_factory.mktemp("doc_dags")
    for index, text in enumerate(dag_blocks()):
        (folder / f"doc_dag_{index}.py").write_text(text, encoding="utf-8")
    return DagBag(dag_folder=str(folder))


def test_every_dag_in_the_doc_parses(doc_bag: Any) -> None:
    assert doc_bag.import_errors == {}
    assert len(doc_bag.dag_ids) == len(dag_blocks())


def test_doc_dags_run(
    doc_bag: Any, set_conn: Callable[[str, str], None], tls_server: Any, tls_files: Any
) -> None:
    for conn_id in ("remsvc_default", "remsvc_web_1", "remsvc_web_2", "remsvc_web_3"):
        set_conn(conn_id, tls_uri(tls_server, tls_files))

    downstream = run_dag(doc_bag.get_dag("frame_downstream"))
    fleet = run_dag(doc_bag.get_dag("fleet_uptime"))
    fan_out = run_dag(doc_bag.get_dag("fleet_kernels"))

    assert set(task_states(downstream).values()) == {"success"}
    assert xcom_value(downstream, "report").endswith("%")
    assert set(task_states(fleet).values()) == {"success"}
    assert xcom_value(fleet, "slowest") > 0
    assert set(task_states(fan_out).values()) == {"success"}
    assert xcom_value(fan_out, "kernel_report") == f"web1{RANGE_DASH}web3: Linux"
    pushed = xcom_value(fan_out, "kernels")
    assert [host["conn_id"] for host in pushed["hosts"].values()] == [
        "remsvc_web_1",
        "remsvc_web_2",
        "remsvc_web_3",
    ]


def fill_in(value: str, port: int, tls_files: Any) -> str:
    """The doc's placeholders replaced, each in the encoding the doc used for it."""
    value = value.replace(DOC_HOST, f"localhost:{port}").replace(DOC_TOKEN, TOKEN)
    value = value.replace('"host": "remsvc-host.example.com"', '"host": "localhost"')
    value = value.replace('"port": 50051', f'"port": {port}')
    for placeholder, attribute in DOC_PATHS.items():
        real = getattr(tls_files, attribute)
        value = value.replace(quote(placeholder, safe=""), quote(real, safe=""))
        value = value.replace(placeholder, real)
    return value


@pytest.mark.parametrize("index", range(len(documented_connections())))
def test_documented_connection_reaches_a_server(
    index: int,
    request: pytest.FixtureRequest,
    set_conn: Callable[[str, str], None],
    tls_files: Any,
) -> None:
    value = documented_connections()[index]
    uses_tls = "use_ssl" in value
    server_name = (
        "mtls_server"
        if "client_cert_path" in value
        else "tls_server"
        if uses_tls
        else "plaintext_token_server"
        if "bearer_token" in value
        else "plaintext_server"
    )
    server = request.getfixturevalue(server_name)
    set_conn("remsvc_doc", fill_in(value, server.port, tls_files))

    hook = RemSvcHook("remsvc_doc")
    settings = hook.get_channel_settings()
    outcome = hook.run_commands(["echo documented"], stream_timeout=30.0)

    assert settings.target == f"localhost:{server.port}"
    assert settings.use_tls is uses_tls
    assert outcome.complete, outcome.describe_failure()
    assert outcome.results[1].out == "documented\n"
