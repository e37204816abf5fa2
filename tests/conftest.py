"""Fixtures shared by the whole suite: test certificates and a real server process."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import trustme
from support.misbehaving_server import MisbehavingServer, Misbehaviour
from support.server_process import ServerProcess, ServerStartError, launch_server

__all__ = ["ServerStartError", "TLSFiles"]


@dataclass(frozen=True)
class TLSFiles:
    """PEM files made by trustme for this test session (paths as str).

    The server certificate is valid for localhost, 127.0.0.1 and ::1; the client
    certificate is signed by the same CA. ``other_*`` come from an unrelated CA, for
    "wrong CA" tests.
    """

    ca_cert: str
    server_cert: str
    server_key: str
    client_cert: str
    client_key: str
    other_ca_cert: str
    other_client_cert: str
    other_client_key: str


def _write_cert(cert: trustme.LeafCert, cert_path: Path, key_path: Path) -> None:
    cert_path.write_bytes(b"".join(blob.bytes() for blob in cert.cert_chain_pems))
    cert.private_key_pem.write_to_path(str(key_path))


@pytest.fixture(scope="session")
def tls_files(tmp_path_factory: pytest.TempPathFactory) -> TLSFiles:
    directory = tmp_path_factory.mktemp("tls")
    ca = trustme.CA()
    other_ca = trustme.CA()
    ca.cert_pem.write_to_path(str(directory / "ca.pem"))
    other_ca.cert_pem.write_to_path(str(directory / "other-ca.pem"))
    _write_cert(
        ca.issue_cert("localhost", "127.0.0.1", "::1"),
        directory / "server.pem",
        directory / "server.key",
    )
    _write_cert(
        ca.issue_cert("client.remsvc.test"), directory / "client.pem", directory / "client.key"
    )
    _write_cert(
        other_ca.issue_cert("intruder.remsvc.test"),
        directory / "other-client.pem",
        directory / "other-client.key",
    )
    return TLSFiles(
        ca_cert=str(directory / "ca.pem"),
        server_cert=str(directory / "server.pem"),
        server_key=str(directory / "server.key"),
        client_cert=str(directory / "client.pem"),
        client_key=str(directory / "client.key"),
        other_ca_cert=str(directory / "other-ca.pem"),
        other_client_cert=str(directory / "other-client.pem"),
        other_client_key=str(directory / "other-client.key"),
    )


@pytest.fixture
def server_process(tmp_path: Path) -> Iterator[Callable[..., ServerProcess]]:
    """Factory: ``server_process(ini_text_or_overrides=None, **overrides) -> ServerProcess``.

    Starts ``remsvc-server`` as a real subprocess on 127.0.0.1 and an ephemeral port,
    waiting until it listens. The argument is INI text (verbatim), a mapping of INI
    sections (``{"server": {"cmd_timeout_ms": 500}}``) or ServerConfig-style overrides
    (``cmd_timeout_ms=500, auth={"ci": "tok"}, tls_enabled=True, ...``). Keywords
    ``host``, ``env`` and ``wait_ready`` go to the launcher. A server that exits before
    it is ready raises :class:`ServerStartError` with everything it printed.
    Every server is stopped at teardown.
    """
    started: list[ServerProcess] = []

    def start(config: str | Mapping[str, Any] | None = None, **kwargs: Any) -> ServerProcess:
        process = launch_server(tmp_path / f"server-{len(started)}", config, **kwargs)
        started.append(process)
        return process

    try:
        yield start
    finally:
        for process in started:
            process.close()


@pytest.fixture
def misbehaving() -> Iterator[Callable[..., MisbehavingServer]]:
    """``misbehaving(**Misbehaviour fields) -> started MisbehavingServer``, stopped after."""
    servers: list[MisbehavingServer] = []

    def start(port: int = 0, **faults: Any) -> MisbehavingServer:
        server = MisbehavingServer(Misbehaviour(**faults), port=port).start()
        servers.append(server)
        return server

    try:
        yield start
    finally:
        for server in servers:
            server.stop()
