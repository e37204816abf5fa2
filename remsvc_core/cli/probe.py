"""Calling Ping/GetStatus and turning a failed call into one clear line (exit 3)."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

import grpc

from remsvc_core.cli.exit_codes import ConnectionFailure
from remsvc_core.errors import CommandValidationError, RemSvcError, SettingsError
from remsvc_core.settings import ChannelSettings

T = TypeVar("T")


def call_probe(call: Callable[[], T], settings: ChannelSettings) -> T:
    """Run ``call``; a gRPC or stream failure becomes :class:`ConnectionFailure`."""
    try:
        return call()
    except (SettingsError, CommandValidationError):
        raise
    except grpc.RpcError as exc:
        code = exc.code() if callable(getattr(exc, "code", None)) else None
        details = exc.details() if callable(getattr(exc, "details", None)) else ""
        name = getattr(code, "name", "ERROR")
        raise ConnectionFailure(_message(settings, f"{name}: {details}", name)) from None
    except RemSvcError as exc:
        raise ConnectionFailure(_message(settings, str(exc), "")) from None


def _message(settings: ChannelSettings, what: str, code: str) -> str:
    if code == "UNAUTHENTICATED":
        hint = "check --token-file/--token-env (or $REMSVC_TOKEN)"
    else:
        hint = "check the target, that the server is running, and the TLS options"
    return f"{settings.safe_description()}: {what.strip()}; {hint}"
