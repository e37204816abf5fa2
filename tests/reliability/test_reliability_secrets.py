"""Secrets: the bearer token stays secret, TLS and tokens are really checked.

Runs with a bearer token through the engine, the command line and real Airflow
(``dag.test()``), logging captured at DEBUG for every logger; then the token is
searched for in every log line, exception text, repr, XCom value, serialized
trigger, Airflow log file, the Airflow metadata database file, and in the command
line of every process on the machine (read from /proc while the runs are going on).
Each search first proves it can see the token where it is expected (the token file,
a process started with it on its command line), so a silent scanner cannot pass.
"""

from __future__ import annotations

import hashlib
import hmac
import inspect
import logging
import os
import subprocess
import sys
import time
import traceback
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import trustme
from procfs_probe import cmdlines
from reliability_figures import Figures

from remsvc_core import plugins
from remsvc_core.engine import NO_RETRY, run_commands, run_commands_sync
from remsvc_core.errors import RemSvcError
from remsvc_core.hookspecs import hookimpl
from remsvc_core.probes import ping, ping_sync
from remsvc_core.server import auth
from remsvc_core.server.embedded import EmbeddedServer
from remsvc_core.settings import ChannelSettings

pytestmark = [pytest.mark.reliability, pytest.mark.timeout(180)]

TOKEN = "tok-reliability-secret-6d2f9b41e07a"
WRONG_TOKEN = "tok-reliability-wrong-0b8e13c5d4f2"
SECRETS = (TOKEN, WRONG_TOKEN)
LOGGERS = ("", "remsvc_core", "remsvc", "remsvc.server", "grpc", "airflow", "remsvc_provider")


def occurrences(text: str | bytes) -> int:
    if isinstance(text, bytes):
        return sum(text.count(secret.encode()) for secret in SECRETS)
    return sum(text.count(secret) for secret in SECRETS)


def scan(figures: Figures, place: str, text: str | bytes) -> int:
    found = occurrences(text)
    figures.token_scan(place, found)
    return found


def process_list_hits() -> int:
    """Token occurrences in the command line of every process (this one included)."""
    return sum(occurrences(cmdline) for _, cmdline in cmdlines())


class ProcessListWatch:
    """A plugin that reads every process's command line each time a result arrives."""

    def __init__(self) -> None:
        self.scans = 0
        self.hits = 0

    @hookimpl
    def remsvc_result(self) -> None:
        self.scans += 1
        self.hits += process_list_hits()


@pytest.fixture
def debug_logs(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    for name in LOGGERS:
        caplog.set_level(logging.DEBUG, logger=name)
    return caplog


def log_text(caplog: pytest.LogCaptureFixture) -> str:
    lines = []
    for record in caplog.records:
        lines.append(record.getMessage())
        if record.exc_info:
            lines.extend(traceback.format_exception(*record.exc_info))
        lines.append(repr(record.args))
    return "\n".join(lines)


@pytest.fixture(scope="module")
def secure_server(tls_files: Any) -> Iterator[EmbeddedServer]:
    """TLS, a bearer token, debug logging, and a deny list: production-like."""
    with EmbeddedServer(
        tls_enabled=True,
        tls_cert=tls_files.server_cert,
        tls_key=tls_files.server_key,
        auth={"ops": TOKEN, "other": "tok-another-identity-77"},
        denylist=[("no_forbidden", "forbidden-word")],
        log_level="debug",
    ) as server:
        yield server


def secure_settings(server: EmbeddedServer, tls_files: Any, token: str = TOKEN) -> ChannelSettings:
    return ChannelSettings(
        target=f"localhost:{server.port}",
        use_tls=True,
        ca_cert_path=tls_files.ca_cert,
        bearer_token=token,
    )


def test_the_scanners_can_see_a_token(tmp_path: Path, figures: Figures) -> None:
    """Positive controls: where the token is, the scans find it."""
    token_file = tmp_path / "token"
    token_file.write_text(TOKEN)
    assert occurrences(token_file.read_bytes()) == 1
    holder = subprocess.Popen(
        [sys.executable, "-c", "import time; time.sleep(30)", TOKEN], stdin=subprocess.DEVNULL
    )
    try:
        deadline = time.monotonic() + 10
        while process_list_hits() == 0 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert process_list_hits() >= 1, "the /proc scan cannot see a token on a command line"
    finally:
        holder.kill()
        holder.wait()
    figures.tried("scanner positive controls", 2)


# -- the engine ------------------------------------------------------------------------


async def test_engine_runs_leak_no_token(secure_server, tls_files, debug_logs, figures):
    good = secure_settings(secure_server, tls_files)
    bad = secure_settings(secure_server, tls_files, WRONG_TOKEN)
    watch = ProcessListWatch()

    outcome = await run_commands(
        ["echo one", "sleep 0.2; echo two", "exit 3", "echo forbidden-word", "echo never"],
        good,
        stream_timeout=30,
        hooks=[watch],
        metadata=[("x-team", "ops")],
    )
    refused = await run_commands(["echo hi"], bad, stream_timeout=30)
    with pytest.raises(RemSvcError) as ping_error:
        await ping(bad, timeout=10)
    await ping(good, timeout=10)

    assert sorted(outcome.results) == [1, 2, 3]
    assert outcome.status_code == "PERMISSION_DENIED"
    assert refused.status_code == "UNAUTHENTICATED"
    assert watch.scans == 3
    found = {
        "log lines": scan(figures, "log lines", log_text(debug_logs)),
        "outcome JSON": scan(figures, "outcome JSON", str(outcome.to_json())),
        "refused outcome": scan(figures, "outcome JSON", str(refused.to_json())),
        "reprs": scan(figures, "reprs", repr(good) + repr(bad) + repr(outcome) + str(good)),
        "exception": scan(
            figures, "exception text", "".join(traceback.format_exception(ping_error.value))
        ),
        "describe": scan(figures, "exception text", refused.describe_failure()),
        "process list": watch.hits,
    }
    figures.token_scan("process list", watch.hits)
    assert found == dict.fromkeys(found, 0), found


# -- the command line ---------------------------------------------------------------------


def run_cli(args: list[str], env: dict[str, str], figures: Figures) -> tuple[int, str, int]:
    """Run ``remsvc`` to completion while scanning /proc; (exit status, output, hits)."""
    process = subprocess.Popen(
        [sys.executable, "-m", "remsvc_core.cli", "--debug", *args],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        env=env,
    )
    hits = scans = 0
    deadline = time.monotonic() + 90
    while process.poll() is None and time.monotonic() < deadline:
        hits += process_list_hits()
        scans += 1
        time.sleep(0.05)
    output, _ = process.communicate(timeout=30)
    figures.token_scan("process list", hits)
    assert scans > 0, "the CLI ended before the process list was read once"
    return process.returncode, output.decode("utf-8", "replace"), hits


def test_command_line_runs_leak_no_token(secure_server, tls_files, tmp_path, figures):
    token_file = tmp_path / "token"
    token_file.write_text(TOKEN + "\n")
    wrong_file = tmp_path / "wrong"
    wrong_file.write_text(WRONG_TOKEN)
    env = {k: v for k, v in os.environ.items() if not k.startswith("REMSVC_")}
    common = ["--target", f"localhost:{secure_server.port}", "--ca-cert", tls_files.ca_cert]

    runs = {
        "token file": run_cli(
            [
                "run",
                *common,
                "--token-file",
                str(token_file),
                "--output",
                "json",
                "sleep 0.5",
                "echo ok",
                "exit 4",
            ],
            env,
            figures,
        ),
        "token env": run_cli(
            ["run", *common, "--token-env", "MY_TOKEN", "echo env"],
            {**env, "MY_TOKEN": TOKEN},
            figures,
        ),
        "wrong token": run_cli(
            ["run", *common, "--token-file", str(wrong_file), "echo no"], env, figures
        ),
        "ping": run_cli(["ping", *common, "--token-file", str(token_file)], env, figures),
    }

    statuses = {name: status for name, (status, _, _) in runs.items()}
    assert statuses == {"token file": 1, "token env": 0, "wrong token": 3, "ping": 0}, runs
    for name, (_, output, hits) in runs.items():
        assert scan(figures, "CLI output", output) == 0, (name, output)
        assert hits == 0, f"{name}: the token was on a process command line"


# -- Airflow --------------------------------------------------------------------------------


@pytest.mark.airflow
@pytest.mark.usefixtures("airflow_db")
def test_airflow_runs_leak_no_token(
    secure_server, tls_files, set_conn, debug_logs, airflow_db, figures
):
    from urllib.parse import urlencode

    from reliability_airflow import run_task

    query = urlencode({"use_ssl": "true", "ca_cert_path": tls_files.ca_cert, "bearer_token": TOKEN})
    set_conn("rel_secret", f"remsvc://localhost:{secure_server.port}?{query}")
    watch = ProcessListWatch()
    plugins.register_plugin(watch)
    try:
        ok = run_task(
            "rel_secret_ok",
            commands=["echo one", "sleep 0.3; echo two"],
            grpc_conn_id="rel_secret",
            result_handler="dataframe",
        )
        failed = run_task(
            "rel_secret_failed",
            commands=["echo one", "exit 5", "echo forbidden-word", "echo never"],
            grpc_conn_id="rel_secret",
        )
    finally:
        plugins.unregister_plugin(watch)
    trigger = deferred_trigger("rel_secret")

    assert ok.task_state == "success"
    assert failed.task_state == "failed"
    assert watch.scans >= 3
    figures.token_scan("process list", watch.hits)
    airflow_home = Path(os.environ["AIRFLOW_HOME"])
    log_files = [p for p in (airflow_home / "logs").rglob("*") if p.is_file()]
    database = [p for p in airflow_db.parent.glob(airflow_db.name + "*") if p.is_file()]
    found = {
        "process list": watch.hits,
        "log lines": scan(figures, "log lines", log_text(debug_logs)),
        "XCom": scan(figures, "XCom", "".join(ok.raw_xcom_texts() + failed.raw_xcom_texts())),
        "failure message": scan(figures, "exception text", str(failed.xcom()["error_msg"])),
        "serialized trigger": scan(figures, "serialized trigger", repr(trigger.serialize())),
        "trigger repr": scan(figures, "reprs", repr(trigger)),
        "log files": sum(scan(figures, "Airflow log files", p.read_bytes()) for p in log_files),
        "database": sum(scan(figures, "Airflow metadata DB", p.read_bytes()) for p in database),
    }
    assert database, "no metadata database file found to scan"
    # Airflow's secrets masker would turn a logged token into "***" before it reaches
    # any handler: nothing masked means the token never reached a log call at all.
    masked = [line for line in log_text(debug_logs).splitlines() if "***" in line]
    assert not masked, masked[:5]
    assert found == dict.fromkeys(found, 0), found


def deferred_trigger(conn_id: str) -> Any:
    """The trigger the operator defers with, exactly as it would be stored."""
    try:
        from airflow.sdk.exceptions import TaskDeferred
    except ImportError:  # pragma: no cover - Airflow 3.1
        from airflow.exceptions import TaskDeferred

    from remsvc_provider.operators.remsvc import RemSvcOperator

    operator = RemSvcOperator(
        task_id="t", commands=["echo a"], grpc_conn_id=conn_id, result_handler="rc_filter"
    )
    # The smallest task context execute() reads (only to label the commands' src).
    ti = SimpleNamespace(dag_id="d", task_id="t", run_id="r", try_number=1, map_index=-1)
    with pytest.raises(TaskDeferred) as deferred:
        operator.execute({"ti": ti})
    return deferred.value.trigger


# -- TLS and tokens are really checked -----------------------------------------------------


@pytest.fixture(scope="module")
def other_name_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Any, str]]:
    """A TLS server whose certificate is valid only for another host name."""
    directory = tmp_path_factory.mktemp("other-name")
    ca = trustme.CA()
    leaf = ca.issue_cert("other.remsvc.test")
    cert, key, ca_path = directory / "cert.pem", directory / "key.pem", directory / "ca.pem"
    cert.write_bytes(b"".join(blob.bytes() for blob in leaf.cert_chain_pems))
    leaf.private_key_pem.write_to_path(str(key))
    ca.cert_pem.write_to_path(str(ca_path))
    with EmbeddedServer(tls_enabled=True, tls_cert=str(cert), tls_key=str(key)) as server:
        yield server, str(ca_path)


def test_tls_rejects_a_certificate_for_another_name(other_name_server, figures):
    server, ca_path = other_name_server
    for host in ("localhost", "127.0.0.1"):
        wrong_name = ChannelSettings(
            target=f"{host}:{server.port}", use_tls=True, ca_cert_path=ca_path
        )
        outcome = run_commands_sync(["echo hi"], wrong_name, stream_timeout=10, retry=NO_RETRY)
        assert outcome.status_code == "UNAVAILABLE", outcome.status_details
        assert outcome.results == {}
        figures.fault("TLS certificate for another host name")
    # The same server, verified under the name its certificate carries, is fine.
    right_name = ChannelSettings(
        target=f"127.0.0.1:{server.port}",
        use_tls=True,
        ca_cert_path=ca_path,
        tls_server_name="other.remsvc.test",
    )
    assert run_commands_sync(["echo hi"], right_name, stream_timeout=10).complete


@pytest.fixture(scope="module")
def mtls_server(tls_files: Any) -> Iterator[EmbeddedServer]:
    with EmbeddedServer(
        tls_enabled=True,
        tls_cert=tls_files.server_cert,
        tls_key=tls_files.server_key,
        tls_ca=tls_files.ca_cert,
    ) as server:
        yield server


def test_mutual_tls_rejects_a_client_without_a_good_certificate(mtls_server, tls_files, figures):
    base = {"target": f"localhost:{mtls_server.port}", "use_tls": True}
    no_cert = ChannelSettings(**base, ca_cert_path=tls_files.ca_cert)
    foreign_cert = ChannelSettings(
        **base,
        ca_cert_path=tls_files.ca_cert,
        client_cert_path=tls_files.other_client_cert,
        client_key_path=tls_files.other_client_key,
    )
    for settings in (no_cert, foreign_cert):
        outcome = run_commands_sync(["echo hi"], settings, stream_timeout=10, retry=NO_RETRY)
        assert outcome.status_code == "UNAVAILABLE", outcome.status_details
        assert outcome.results == {}
        figures.fault("mTLS client without a trusted certificate")
    with_cert = ChannelSettings(
        **base,
        ca_cert_path=tls_files.ca_cert,
        client_cert_path=tls_files.client_cert,
        client_key_path=tls_files.client_key,
    )
    assert run_commands_sync(["echo hi"], with_cert, stream_timeout=10).complete


@pytest.mark.parametrize(
    "header",
    [
        None,
        f"Bearer {WRONG_TOKEN}",
        f"bearer {TOKEN}",
        f"Basic {TOKEN}",
        f"Bearer {TOKEN[:-1]}",
        f"Bearer {TOKEN}x",
        f"Bearer  {TOKEN}",
        "Bearer ",
    ],
)
def test_wrong_tokens_are_rejected(secure_server, tls_files, header, figures):
    settings = ChannelSettings(
        target=f"localhost:{secure_server.port}", use_tls=True, ca_cert_path=tls_files.ca_cert
    )
    metadata = [("authorization", header)] if header is not None else []
    with pytest.raises(RemSvcError, match="UNAUTHENTICATED"):
        ping_sync(settings, timeout=10, metadata=metadata)
    outcome = run_commands_sync(["echo hi"], settings, stream_timeout=10, metadata=metadata)
    assert outcome.status_code == "UNAUTHENTICATED"
    assert outcome.results == {}
    figures.tried("wrong tokens", 2)


def count_compare_digest_calls(action: Any) -> int:
    """How many times ``hmac.compare_digest`` runs during ``action()`` (seen, not patched)."""
    calls = 0

    def profiler(frame: Any, event: str, arg: Any) -> None:
        nonlocal calls
        if event == "c_call" and arg is hmac.compare_digest:
            calls += 1

    sys.setprofile(profiler)
    try:
        action()
    finally:
        sys.setprofile(None)
    return calls


def test_token_comparison_is_constant_time_over_every_token(figures):
    tokens = {f"id{n}": f"token-{n}-{'x' * n}" for n in range(6)}
    interceptor = auth.BearerAuthInterceptor(tokens)
    first, last = tokens["id0"], tokens["id5"]
    cases = {
        "first identity's token": (first, "id0"),
        "last identity's token": (last, "id5"),
        "unknown token": ("token-unknown", None),
        "a prefix of a real token": (last[:-1], None),
        "empty token": ("", None),
    }
    for name, (presented, identity) in cases.items():
        metadata = [("authorization", f"Bearer {presented}")]
        result: list[Any] = []

        def authenticate(metadata: Any = metadata, result: list[Any] = result) -> None:
            result.append(interceptor.authenticate(metadata))

        calls = count_compare_digest_calls(authenticate)
        # Every configured token is compared, whichever matches (no early exit).
        assert calls == len(tokens), (name, calls)
        assert result[0][0] == identity, (name, result)
        figures.tried("token comparisons")
    # The comparison runs on fixed-length digests, so the length of the presented
    # token does not change the work either.
    source = inspect.getsource(auth)
    assert "hmac.compare_digest(presented, expected)" in source
    assert auth._digest("a") != auth._digest("b")
    assert len(auth._digest("a")) == len(auth._digest("a" * 1000)) == hashlib.sha256().digest_size


def test_process_list_of_a_running_server_holds_no_token(server_process, tmp_path, figures):
    """A server started from an INI file with tokens: the tokens are not on any cmdline."""
    server = server_process(auth={"ops": TOKEN})
    ping_sync(ChannelSettings(target=server.target, bearer_token=TOKEN), timeout=10)
    assert scan(figures, "process list", b"".join(c for _, c in cmdlines())) == 0
    assert scan(figures, "server log", server.log_text()) == 0
