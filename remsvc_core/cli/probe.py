"""Calling Ping/GetStatus and turning a failed call into one clear line (exit 3)."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from remsvc_core.cli.exit_codes import ConnectionFailure
from remsvc_core.errors import CallError

T = TypeVar("T")


def call_probe(call: Callable[[], T]) -> T:
    """Run ``call``; a failed call (it names target, gRPC code and a hint) becomes
    :class:`ConnectionFailure`. Bad settings stay usage errors."""
    try:
        return call()
    except CallError as exc:
        message = str(exc)
        if exc.code == "UNAUTHENTICATED":
            message += "; give the token with --token-file PATH or --token-env VAR"
        raise ConnectionFailure(message) from None
