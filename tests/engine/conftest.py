"""Fixtures for the engine tests: a misbehaving server factory and recording plugins."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
from engine_helpers import Recorder
from support.misbehaving_server import MisbehavingServer, Misbehaviour

from remsvc_core import plugins


@pytest.fixture
def recorder() -> Recorder:
    return Recorder()


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


@pytest.fixture(autouse=True)
def _no_leftover_plugins() -> Iterator[None]:
    """Every test starts and ends with the process-wide plugins it found."""
    before = {info.name for info in plugins.list_plugins()}
    yield
    for info in plugins.list_plugins():
        if info.name not in before:
            plugins.unregister_plugin(info.name)
