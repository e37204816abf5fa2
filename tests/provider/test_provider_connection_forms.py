"""Every way to write a ``remsvc`` connection, parsed by real Airflow (AIRFLOW_CONN_*).

Each form is checked twice: the ChannelSettings the hook builds from it, and a real
call against a server that needs exactly those settings.
"""

from __future__ import annotations

import datetime
import json
from collections.abc import Callable
from typing import Any
from urllib.parse import quote

import pytest
from airflow_runs import IDENTITY, TOKEN, run_dag, xcom_value

from remsvc_core.errors import SettingsError
from remsvc_provider.hooks.remsvc import RemSvcHook

pytestmark = [pytest.mark.airflow, pytest.mark.usefixtures("airflow_db")]

SetConn = Callable[[str, str], None]


def settings_of(conn_id: str) -> Any:
    return RemSvcHook(grpc_conn_id=conn_id).get_channel_settings()


def run_via_hook(conn_id: str) -> Any:
    return RemSvcHook(grpc_conn_id=conn_id).run_commands(["echo via-hook"], stream_timeout=30.0)


def original_uri(port: int, extra: dict[str, Any]) -> str:
    """Exactly the shape the original provider's README documents."""
    return f"remsvc://localhost:{port}?extra={json.dumps(extra, separators=(',', ':'))}"


def tls_extra(tls: Any) -> dict[str, Any]:
    return {"use_ssl": True, "ca_cert_path": tls.ca_cert, "bearer_token": TOKEN}


# -- the original provider's four documented URIs, each run by a real DAG --


ORIGINAL_FORMS = {
    "insecure_no_auth": ("plaintext_server", lambda tls: {}),
    "insecure_token": ("plaintext_token_server", lambda tls: {"bearer_token": TOKEN}),
    "tls_system_trust_token": ("tls_server", lambda tls: {"use_ssl": True, "bearer_token": TOKEN}),
    "tls_custom_ca_token": (
        "tls_server",
        lambda tls: {"use_ssl": True, "ca_cert_path": tls.ca_cert, "bearer_token": TOKEN},
    ),
}


@pytest.mark.parametrize("form", sorted(ORIGINAL_FORMS))
def test_original_documented_uri(
    form: str, request: pytest.FixtureRequest, set_conn: SetConn, tls_files: Any
) -> None:
    from airflow.sdk import DAG

    from remsvc_provider.operators.remsvc import RemSvcOperator

    server_fixture, make_extra = ORIGINAL_FORMS[form]
    server = request.getfixturevalue(server_fixture)
    extra = make_extra(tls_files)
    set_conn("remsvc_default", original_uri(server.port, extra))

    settings = settings_of("remsvc_default")
    assert settings.target == f"localhost:{server.port}"
    assert settings.use_tls is bool(extra.get("use_ssl"))
    assert settings.ca_cert_path == extra.get("ca_cert_path")
    assert (settings.bearer_token.reveal() if settings.bearer_token else None) == extra.get(
        "bearer_token"
    )

    with DAG(f"rs_form_{form}", schedule=None, start_date=datetime.datetime(2024, 1, 1)) as dag:
        RemSvcOperator(
            task_id="run_remote",
            grpc_conn_id="remsvc_default",
            commands=[{"cmd": "echo hello", "cmdtyp": 0}],
        )
    dag_run = run_dag(dag)

    assert dag_run.state == "success"
    assert xcom_value(dag_run, "run_remote")["results"][0]["out"] == "hello\n"


def test_original_form_with_a_wrong_token_is_refused(
    set_conn: SetConn, tls_server: Any, tls_files: Any
) -> None:
    extra = {"use_ssl": True, "ca_cert_path": tls_files.ca_cert, "bearer_token": "not-the-token"}
    set_conn("remsvc_wrong", original_uri(tls_server.port, extra))

    outcome = run_via_hook("remsvc_wrong")

    assert outcome.status_code == "UNAUTHENTICATED"
    assert outcome.results == {}


# -- Airflow's standard forms --


def test_query_parameters(set_conn: SetConn, tls_server: Any, tls_files: Any) -> None:
    set_conn(
        "remsvc_query",
        f"remsvc://localhost:{tls_server.port}?use_ssl=true"
        f"&ca_cert_path={quote(tls_files.ca_cert)}&bearer_token={TOKEN}",
    )

    settings = settings_of("remsvc_query")
    outcome = run_via_hook("remsvc_query")

    assert (settings.use_tls, settings.ca_cert_path) == (True, tls_files.ca_cert)
    assert settings.bearer_token.reveal() == TOKEN
    assert outcome.complete
    assert outcome.results[1].out == "via-hook\n"


def test_dunder_extra_json(set_conn: SetConn, tls_server: Any, tls_files: Any) -> None:
    extra = {"use_ssl": True, "ca_cert_path": tls_files.ca_cert, "bearer_token": TOKEN}
    set_conn(
        "remsvc_dunder",
        f"remsvc://localhost:{tls_server.port}?__extra__={quote(json.dumps(extra))}",
    )

    settings = settings_of("remsvc_dunder")
    outcome = run_via_hook("remsvc_dunder")

    assert (settings.use_tls, settings.ca_cert_path) == (True, tls_files.ca_cert)
    assert outcome.complete


def test_json_connection_format(set_conn: SetConn, tls_server: Any, tls_files: Any) -> None:
    conn = {
        "conn_type": "remsvc",
        "host": "localhost",
        "port": tls_server.port,
        "extra": {"use_ssl": True, "ca_cert_path": tls_files.ca_cert, "bearer_token": TOKEN},
    }
    set_conn("remsvc_json", json.dumps(conn))

    settings = settings_of("remsvc_json")
    outcome = run_via_hook("remsvc_json")

    assert settings.target == f"localhost:{tls_server.port}"
    assert settings.use_tls
    assert outcome.complete


def test_legacy_prefixed_form_fields(set_conn: SetConn, tls_server: Any, tls_files: Any) -> None:
    conn = {
        "conn_type": "remsvc",
        "host": "localhost",
        "port": tls_server.port,
        "extra": {
            "extra__remsvc__use_ssl": True,
            "extra__remsvc__ca_cert_path": tls_files.ca_cert,
            "extra__remsvc__bearer_token": TOKEN,
            "extra__remsvc__client_cert_path": "",  # blank form fields count as unset
        },
    }
    set_conn("remsvc_legacy", json.dumps(conn))

    settings = settings_of("remsvc_legacy")
    outcome = run_via_hook("remsvc_legacy")

    assert (settings.use_tls, settings.client_cert_path) == (True, None)
    assert outcome.complete


def test_default_port_is_50051(set_conn: SetConn) -> None:
    set_conn("remsvc_noport", "remsvc://remsvc-host.example.com")

    assert settings_of("remsvc_noport").target == "remsvc-host.example.com:50051"


# -- mutual TLS, which the original lacked --


def test_mutual_tls(set_conn: SetConn, mtls_server: Any, tls_files: Any) -> None:
    extra = {
        "use_ssl": True,
        "ca_cert_path": tls_files.ca_cert,
        "client_cert_path": tls_files.client_cert,
        "client_key_path": tls_files.client_key,
        "bearer_token": TOKEN,
    }
    set_conn("remsvc_mtls", original_uri(mtls_server.port, extra))
    without_cert = {k: v for k, v in extra.items() if not k.startswith("client_")}
    set_conn("remsvc_mtls_nocert", original_uri(mtls_server.port, without_cert))

    settings = settings_of("remsvc_mtls")
    accepted = run_via_hook("remsvc_mtls")
    refused = run_via_hook("remsvc_mtls_nocert")

    assert (settings.client_cert_path, settings.client_key_path) == (
        tls_files.client_cert,
        tls_files.client_key,
    )
    assert accepted.complete
    assert refused.status_code == "UNAVAILABLE"
    assert refused.results == {}


def test_tls_server_name_override(set_conn: SetConn, tls_server: Any, tls_files: Any) -> None:
    # Connect by address but verify the certificate's DNS name.
    extra = {
        "use_ssl": True,
        "ca_cert_path": tls_files.ca_cert,
        "tls_server_name": "localhost",
        "bearer_token": TOKEN,
    }
    set_conn(
        "remsvc_sni", f"remsvc://127.0.0.1:{tls_server.port}?__extra__={quote(json.dumps(extra))}"
    )

    assert settings_of("remsvc_sni").tls_server_name == "localhost"
    assert run_via_hook("remsvc_sni").complete


def test_keepalive_for_proxies_that_drop_idle_connections(
    set_conn: SetConn, plaintext_server: Any
) -> None:
    set_conn("remsvc_keepalive", f"remsvc://localhost:{plaintext_server.port}?keepalive_s=10")
    form_json = {"conn_type": "remsvc", "host": "localhost", "extra": {"keepalive_s": "45"}}
    set_conn("remsvc_keepalive_form", json.dumps(form_json))  # a form saves text

    assert settings_of("remsvc_keepalive").keepalive_s == 10
    assert settings_of("remsvc_keepalive_form").keepalive_s == 45
    assert run_via_hook("remsvc_keepalive").complete


def test_the_hooks_sync_and_async_runs_agree(
    set_conn: SetConn, tls_server: Any, tls_files: Any
) -> None:
    import asyncio

    set_conn("remsvc_pair", original_uri(tls_server.port, tls_extra(tls_files)))
    hook = RemSvcHook("remsvc_pair")

    blocking = hook.run_commands(["echo pair", "exit 3"], stream_timeout=30.0)
    awaited = asyncio.run(hook.arun_commands(["echo pair", "exit 3"], stream_timeout=30.0))

    assert blocking.complete
    assert awaited.complete
    assert [(r.tid, r.rc, r.out) for r in blocking.results.values()] == [
        (r.tid, r.rc, r.out) for r in awaited.results.values()
    ]
    assert [r.rc for r in awaited.results.values()] == [0, 3]
    assert hook.ping() > 0


# -- settings that cannot be honoured are errors, never ignored --


@pytest.mark.parametrize(
    ("uri", "expected"),
    [
        ("remsvc://h:1?use_tls=true", "unknown RemSvc connection setting 'use_tls'"),
        ('remsvc://h:1?extra={"usessl":true}', "unknown RemSvc connection setting 'usessl'"),
        ("remsvc://h:1?ca_cert_path=/etc/hosts", "TLS is off"),
        ("remsvc://h:1?use_ssl=maybe", "use_ssl must be true or false"),
        ("remsvc://h:1?use_ssl=true&ca_cert_path=/nonexistent/ca.pem", "does not exist"),
        ("remsvc://h:1?use_ssl=true&client_cert_path=/etc/hosts", "needs both"),
        ('remsvc://h:1?extra={"verify":false}', "never ignored"),
        ("remsvc://:pw@h:1?bearer_token=other", "given twice with different values"),
        ('remsvc://h:1?extra={"use_ssl":tru}', "not valid JSON"),
        ("remsvc://h:1?keepalive_s=1", "keepalive_s must be a whole number of seconds from 10"),
    ],
)
def test_unusable_settings_are_errors(set_conn: SetConn, uri: str, expected: str) -> None:
    set_conn("remsvc_bad", uri)

    with pytest.raises(SettingsError, match="remsvc_bad") as caught:
        settings_of("remsvc_bad")

    assert expected in str(caught.value)


def test_fields_1_0_0_ignored_are_ignored_and_the_password_is_the_token(
    set_conn: SetConn, caplog: pytest.LogCaptureFixture, capfd: pytest.CaptureFixture[str]
) -> None:
    set_conn("remsvc_seed_uri", "remsvc://someone:pw-token@h:1/db?timeout=30")

    with caplog.at_level("WARNING"):
        settings = settings_of("remsvc_seed_uri")
    captured = capfd.readouterr()
    logged = caplog.text + captured.out + captured.err

    assert settings.target == "h:1"
    assert settings.bearer_token.reveal() == "pw-token"
    warnings = [line for line in logged.splitlines() if "does not use" in line]
    assert len(warnings) == 1, logged
    assert "'login', 'schema', 'timeout'" in warnings[0]
    assert "pw-token" not in logged


# -- the UI's Test button --


def test_test_connection_answers_truthfully(
    set_conn: SetConn, tls_server: Any, tls_files: Any, closed_port: int
) -> None:
    base = {"use_ssl": True, "ca_cert_path": tls_files.ca_cert}
    set_conn("remsvc_ok", original_uri(tls_server.port, {**base, "bearer_token": TOKEN}))
    set_conn("remsvc_badtoken", original_uri(tls_server.port, {**base, "bearer_token": "nope-x"}))
    set_conn("remsvc_gone", original_uri(closed_port, {**base, "bearer_token": TOKEN}))

    ok, ok_message = RemSvcHook("remsvc_ok").test_connection()
    refused, refused_message = RemSvcHook("remsvc_badtoken").test_connection()
    gone, gone_message = RemSvcHook("remsvc_gone").test_connection()

    assert ok, ok_message
    assert f"localhost:{tls_server.port}" in ok_message
    assert not refused
    assert "UNAUTHENTICATED" in refused_message
    assert not gone
    assert "UNAVAILABLE" in gone_message
    assert f"Nothing listens at localhost:{closed_port}" in gone_message
    for message in (ok_message, refused_message, gone_message):
        assert TOKEN not in message
        assert "nope-x" not in message
    assert IDENTITY not in ok_message  # the server's identity names are its business


def test_test_button_says_what_is_wrong(
    set_conn: SetConn, tls_server: Any, plaintext_server: Any, tls_files: Any
) -> None:
    """Settings that cannot be used send nothing; a TLS mismatch is named as one; the
    Test button's connection id (random, made by the UI) is never shown."""
    set_conn("remsvc_x7f3k", original_uri(tls_server.port, {"ca_cert_path": tls_files.ca_cert}))
    set_conn("remsvc_tls_on_plain", original_uri(plaintext_server.port, {"use_ssl": True}))
    set_conn("remsvc_plain_on_tls", original_uri(tls_server.port, {"bearer_token": TOKEN}))

    unusable = RemSvcHook("remsvc_x7f3k").test_connection()
    tls_on_plain = RemSvcHook("remsvc_tls_on_plain").test_connection()
    plain_on_tls = RemSvcHook("remsvc_plain_on_tls").test_connection()

    assert unusable[0] is False
    assert unusable[1].startswith("Nothing was sent: these settings cannot be used")
    assert "TLS is off" in unusable[1]
    assert "remsvc_x7f3k" not in unusable[1]
    assert tls_on_plain[0] is False
    assert "does not speak TLS" in tls_on_plain[1]
    assert "turn TLS off" in tls_on_plain[1]
    assert plain_on_tls[0] is False
    assert "speaks TLS but the connection has TLS off" in plain_on_tls[1]
    for _, message in (unusable, tls_on_plain, plain_on_tls):
        assert "is the server running" not in message
        assert TOKEN not in message
