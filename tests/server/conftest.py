"""Fixtures for the reference server's integration tests."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from support.server_process import ServerProcess, launch_server

from remsvc_core.wire import pb_grpc


@pytest.fixture(scope="module")
def shared_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """One default server for a module's tests that need nothing special (cheaper)."""
    process = launch_server(tmp_path_factory.mktemp("shared-server"), cmd_timeout_ms=10_000)
    try:
        yield process
    finally:
        process.close()


@pytest.fixture
def stub(shared_server: ServerProcess) -> Iterator[pb_grpc.RemSvcStub]:
    with grpc.insecure_channel(shared_server.target) as channel:
        yield pb_grpc.RemSvcStub(channel)


@pytest.fixture
def scratch(tmp_path: Path) -> Path:
    """A directory commands can write marker and pid files into."""
    directory = tmp_path / "scratch"
    directory.mkdir()
    directory.chmod(0o777)
    return directory
