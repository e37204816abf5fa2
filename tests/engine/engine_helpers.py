"""Helpers for the engine tests (imported by name: tests/engine is on sys.path)."""

from __future__ import annotations

import socket
from pathlib import Path
from typing import Any

from remsvc_core.hookspecs import hookimpl


class Recorder:
    """A plugin that writes down every hook call, in order."""

    def __init__(self) -> None:
        self.events: list[tuple[str, Any]] = []

    @hookimpl
    def remsvc_stream_started(self, stream: Any) -> None:
        self.events.append(("started", stream.attempt))

    @hookimpl
    def remsvc_result(self, result: Any, stream: Any) -> None:
        self.events.append(("result", result.tid))

    @hookimpl
    def remsvc_unexpected_response(self, response: Any, stream: Any) -> None:
        self.events.append(("unexpected", (response.reason, response.tid)))

    @hookimpl
    def remsvc_stream_finished(self, outcome: Any, stream: Any) -> None:
        self.events.append(("finished", outcome.status_code))

    def result_tids(self) -> list[int]:
        return [value for name, value in self.events if name == "result"]

    def names(self) -> list[str]:
        return [name for name, _ in self.events]


def free_port() -> int:
    """A loopback port nobody listens on right now (bound, read, released)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def shell_append(path: Path, word: str) -> str:
    """A command that appends ``word`` to ``path``: counts executions on the server."""
    return f"echo {word} >> '{path}'; echo {word}"


def lines(path: Path) -> list[str]:
    return path.read_text().split() if path.exists() else []
