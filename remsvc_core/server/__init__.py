"""The reference RemSvc server: wire- and behaviour-compatible with the upstream one.

``remsvc-server --config FILE`` runs it; :class:`EmbeddedServer` runs it in a
background thread (tests, notebooks); :func:`start_server` inside your own event loop.
"""

from __future__ import annotations

from remsvc_core.server.config import ServerConfig, load_config

__all__ = ["EmbeddedServer", "ServerConfig", "load_config", "start_server"]


def __getattr__(name: str) -> object:
    # grpc is imported only when a server is actually wanted.
    if name == "EmbeddedServer":
        from remsvc_core.server.embedded import EmbeddedServer

        return EmbeddedServer
    if name == "start_server":
        from remsvc_core.server.app import start_server

        return start_server
    raise AttributeError(f"module 'remsvc_core.server' has no attribute {name!r}")
