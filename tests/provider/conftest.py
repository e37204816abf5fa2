"""Real Airflow for the provider tests: one AIRFLOW_HOME and sqlite DB per session.

Airflow reads its configuration when it is first imported, so the environment is
set here, at import time, before any test module imports the provider (and with it
Airflow). The database is created once per session from the ORM (much faster than
running every migration); each test runs real ``dag.test()`` runs against real
servers: TLS, a bearer token, on loopback.
"""

from __future__ import annotations

import os
import shutil
import socket
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from support.airflow_home import prepare_airflow_home

AIRFLOW_HOME = prepare_airflow_home("tests/provider")
# grpc reads this once, the first time a TLS channel needs the "system" trust store;
# the session CA is copied here so the original's "TLS with system trust store"
# connection form can be tested without touching the host's real store. Always
# override: hosts often export this variable pointing at the real system bundle,
# and copying the test CA there would replace the machine's trust store.
SYSTEM_ROOTS = AIRFLOW_HOME / "system-roots.pem"
os.environ["GRPC_DEFAULT_SSL_ROOTS_FILE_PATH"] = str(SYSTEM_ROOTS)

from airflow_runs import DENIED_MARKER, IDENTITY, OTHER_TOKEN, TOKEN, tls_uri  # noqa: E402


@pytest.fixture(scope="session")
def airflow_db() -> Path:
    """Create the metadata database once and register the dags-folder bundle."""
    from airflow import settings
    from airflow.dag_processing.bundles.manager import DagBundlesManager
    from airflow.utils import db

    db.initdb()
    DagBundlesManager().sync_bundles_to_db()
    url = str(settings.engine.url)
    assert url.startswith("sqlite:///"), f"the provider tests expect sqlite, got {url}"
    return Path(url.removeprefix("sqlite:///"))


@pytest.fixture(scope="session")
def system_roots(tls_files: Any) -> Path:
    assert SYSTEM_ROOTS.parent == AIRFLOW_HOME, "never write a trust store outside the test home"
    shutil.copyfile(tls_files.ca_cert, SYSTEM_ROOTS)
    return SYSTEM_ROOTS


def _serve(**overrides: Any) -> Iterator[Any]:
    """A running embedded server for a session fixture to ``yield from``."""
    from remsvc_core.server.embedded import EmbeddedServer

    with EmbeddedServer(port=0, **overrides) as server:
        yield server


def _tls(tls_files: Any) -> dict[str, Any]:
    return {
        "tls_enabled": True,
        "tls_cert": tls_files.server_cert,
        "tls_key": tls_files.server_key,
    }


@pytest.fixture(scope="session")
def tls_server(tls_files: Any, system_roots: Path) -> Iterator[Any]:
    """TLS + bearer token + a deny list: what production looks like."""
    yield from _serve(
        **_tls(tls_files),
        auth={IDENTITY: TOKEN},
        denylist=[("no_forbidden", DENIED_MARKER)],
        max_parallel=1,
    )


@pytest.fixture(scope="session")
def second_tls_server(tls_files: Any, system_roots: Path) -> Iterator[Any]:
    """Another host for fan-out, with its own token."""
    yield from _serve(
        **_tls(tls_files),
        auth={"second": OTHER_TOKEN},
    )


@pytest.fixture(scope="session")
def mtls_server(tls_files: Any, system_roots: Path) -> Iterator[Any]:
    """Mutual TLS: the server requires a client certificate signed by the test CA."""
    yield from _serve(
        **_tls(tls_files),
        tls_ca=tls_files.ca_cert,
        auth={IDENTITY: TOKEN},
    )


@pytest.fixture(scope="session")
def plaintext_server() -> Iterator[Any]:
    """No TLS, no auth: the original's "development only" form."""
    yield from _serve()


@pytest.fixture(scope="session")
def plaintext_token_server() -> Iterator[Any]:
    """No TLS but a token (the original documents it; ours must opt in to allow it)."""
    yield from _serve(auth={IDENTITY: TOKEN}, allow_insecure_auth=True)


@pytest.fixture
def closed_port() -> int:
    """A loopback port with nothing listening (bound, then released)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


@pytest.fixture
def set_conn(monkeypatch: pytest.MonkeyPatch) -> Callable[[str, str], None]:
    """``set_conn("remsvc_x", uri_or_json)``: an AIRFLOW_CONN_* variable for one test."""

    def set_(conn_id: str, value: str) -> None:
        monkeypatch.setenv(f"AIRFLOW_CONN_{conn_id.upper()}", value)

    return set_


@pytest.fixture
def tls_conn(set_conn: Callable[[str, str], None], tls_server: Any, tls_files: Any) -> str:
    """``remsvc_default`` pointing at the TLS + token server."""
    set_conn("remsvc_default", tls_uri(tls_server, tls_files))
    return "remsvc_default"
