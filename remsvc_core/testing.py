"""pytest plugin ``remsvc``: a real reference server for your tests.

Installed with remsvc (entry point ``pytest11``), so plugin and handler authors get
these fixtures without any conftest code:

``remsvc_server``
    A running :class:`~remsvc_core.server.embedded.EmbeddedServer` with the default
    configuration (127.0.0.1, an ephemeral port, no TLS, no auth), stopped after the
    test. ``remsvc_server.settings()`` gives ChannelSettings that reach it.

``remsvc_server_factory``
    ``factory(config=None, **overrides)`` starts another server, with
    :class:`~remsvc_core.server.config.ServerConfig` fields overridden
    (``factory(cmd_timeout_ms=500, auth={"ci": "s3cret"})``); every server it started
    is stopped after the test.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from remsvc_core.server.config import ServerConfig
    from remsvc_core.server.embedded import EmbeddedServer

__all__ = ["remsvc_server", "remsvc_server_factory"]


@pytest.fixture
def remsvc_server_factory() -> Iterator[Callable[..., EmbeddedServer]]:
    # Imported here so that merely having remsvc installed costs pytest nothing.
    from remsvc_core.server.embedded import EmbeddedServer

    started: list[EmbeddedServer] = []

    def start(config: ServerConfig | None = None, **overrides: Any) -> EmbeddedServer:
        if config is not None:
            config = (
                config.replace(port=0, **overrides)
                if "port" not in overrides
                else config.replace(**overrides)
            )
            server = EmbeddedServer(config)
        else:
            server = EmbeddedServer(**overrides)
        server.start()
        started.append(server)
        return server

    try:
        yield start
    finally:
        errors: list[BaseException] = []
        for server in reversed(started):
            try:
                server.stop()
            except Exception as exc:  # stop them all, then report
                errors.append(exc)
        if errors:
            raise errors[0]


@pytest.fixture
def remsvc_server(remsvc_server_factory: Callable[..., EmbeddedServer]) -> EmbeddedServer:
    return remsvc_server_factory()
