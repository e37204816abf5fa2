"""How to reach a RemSvc server: :class:`ChannelSettings`."""

from __future__ import annotations

import math
import os
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from remsvc_core.errors import SettingsError
from remsvc_core.secret import Secret

DEFAULT_PORT = 50051
# Upstream caps stdout and stderr at 256 KiB each, but our server's cap can be raised;
# 64 MiB keeps large outputs working without letting one response exhaust memory.
DEFAULT_MAX_RECEIVE_BYTES = 64 * 1024 * 1024


@dataclass(frozen=True)
class ChannelSettings:
    """Everything needed to open a channel and authenticate calls.

    ``bearer_token`` is a :class:`Secret` and never appears in ``repr``. ``metadata``
    keys are normalised to lower case; a bearer token's ``authorization`` header wins
    over one given in ``metadata``.
    """

    target: str
    use_tls: bool = False
    ca_cert_path: str | None = None
    client_cert_path: str | None = None
    client_key_path: str | None = None
    tls_server_name: str | None = None
    bearer_token: Secret | None = field(default=None, repr=False)
    metadata: tuple[tuple[str, str], ...] = ()
    max_receive_bytes: int = DEFAULT_MAX_RECEIVE_BYTES

    def __post_init__(self) -> None:
        if isinstance(self.bearer_token, str):
            object.__setattr__(
                self, "bearer_token", Secret(self.bearer_token) if self.bearer_token else None
            )
        object.__setattr__(self, "metadata", normalise_metadata(self.metadata))
        self.validate()

    def validate(self) -> None:
        """Raise :class:`SettingsError` for a setting that cannot be honoured."""
        if not self.target or self.target.startswith(":") or self.target.endswith(":"):
            raise SettingsError(f"target {self.target!r} is not host:port, e.g. 127.0.0.1:50051")
        tls_only = {
            "ca_cert_path": self.ca_cert_path,
            "client_cert_path": self.client_cert_path,
            "client_key_path": self.client_key_path,
            "tls_server_name": self.tls_server_name,
        }
        if not self.use_tls:
            given = [name for name, value in tls_only.items() if value]
            if given:
                raise SettingsError(
                    f"{', '.join(given)} given but TLS is off; set use_ssl to true "
                    "or remove the TLS settings"
                )
        if bool(self.client_cert_path) != bool(self.client_key_path):
            raise SettingsError(
                "mutual TLS needs both client_cert_path and client_key_path; only one is set"
            )
        for name in ("ca_cert_path", "client_cert_path", "client_key_path"):
            path = tls_only[name]
            if path and not os.path.isfile(path):
                raise SettingsError(f"{name} {path!r} does not exist or is not a file")
        if self.max_receive_bytes <= 0:
            raise SettingsError("max_receive_bytes must be positive")

    def call_metadata(self, extra: Iterable[tuple[str, str]] = ()) -> list[tuple[str, str]]:
        """Metadata for one call: settings metadata, then ``extra``, then authorization.

        Later duplicates replace earlier ones; the bearer token always wins.
        """
        merged: dict[str, str] = dict(self.metadata)
        merged.update(normalise_metadata(extra))
        if self.bearer_token:
            merged["authorization"] = f"Bearer {self.bearer_token.reveal()}"
        return list(merged.items())

    def channel_key(self) -> tuple[Any, ...]:
        """What makes two channels interchangeable (the token is per call, not per channel)."""
        return (
            self.target,
            self.use_tls,
            self.ca_cert_path,
            self.client_cert_path,
            self.client_key_path,
            self.tls_server_name,
            self.max_receive_bytes,
        )

    def safe_description(self) -> str:
        """For logs: where and how, never the token."""
        parts = [self.target, "TLS" if self.use_tls else "plaintext"]
        if self.client_cert_path:
            parts.append("mTLS")
        if self.bearer_token:
            parts.append("bearer token")
        return ", ".join(parts)


def check_timeout(value: object, name: str = "stream_timeout") -> float:
    """``value`` as a positive, finite number of seconds, or :class:`SettingsError`."""
    if (
        isinstance(value, bool)
        or not isinstance(value, (int, float))
        or not math.isfinite(value)
        or value <= 0
    ):
        raise SettingsError(f"{name} must be a positive number of seconds, got {value!r}")
    return float(value)


def user_metadata(
    items: Iterable[tuple[str, str]] | Any, *, why: str, fix: str
) -> tuple[tuple[str, str], ...]:
    """Call metadata a user typed in, normalised, with ``authorization`` refused.

    Metadata given as an operator argument is stored in Airflow's database, and on a
    command line every local user sees it in ``ps``: no place for a credential.
    ``why`` says why it is refused there, ``fix`` where the token belongs instead.
    """
    pairs = normalise_metadata(items)
    if any(key == "authorization" for key, _ in pairs):
        raise SettingsError(f"metadata must not contain 'authorization': {why}. {fix}")
    return pairs


def normalise_metadata(items: Iterable[tuple[str, str]] | Any) -> tuple[tuple[str, str], ...]:
    """Lower-case keys (gRPC requires it) and check every entry is a pair of strings."""
    if items is None:
        return ()
    if isinstance(items, dict):
        items = list(items.items())
    out: dict[str, str] = {}
    for index, item in enumerate(items):
        if not isinstance(item, (tuple, list)) or len(item) != 2:
            raise SettingsError(
                f"metadata[{index}] must be a (key, value) pair, got {type(item).__name__}"
            )
        key, value = item
        if not isinstance(key, str) or not key.strip():
            raise SettingsError(f"metadata[{index}] key must be a non-empty string")
        if not isinstance(value, str):
            raise SettingsError(
                f"metadata[{index}] value for {key!r} must be a string, got {type(value).__name__}"
            )
        key = key.strip().lower()
        _check_metadata_entry(index, key, value)
        out[key] = value
    return tuple(out.items())


# What gRPC lets a custom metadata entry be; anything else fails the call only once it
# is sent (INTERNAL "Invalid metadata", or for "-bin" keys a stream that never starts).
_METADATA_KEY = re.compile(r"[0-9a-z_.\-]+")
_METADATA_VALUE = re.compile(r"[\x20-\x7e]*")
# Set by gRPC itself; a caller's value is silently dropped or overwritten.
_RESERVED_METADATA_KEYS = frozenset({"content-type", "te", "user-agent"})


def _check_metadata_entry(index: int, key: str, value: str) -> None:
    if not _METADATA_KEY.fullmatch(key):
        raise SettingsError(
            f"metadata[{index}] key {key!r} is not a valid gRPC metadata key; use only "
            "lower-case letters, digits, '-', '_' and '.'"
        )
    if key.startswith("grpc-") or key in _RESERVED_METADATA_KEYS:
        raise SettingsError(
            f"metadata[{index}] key {key!r} is reserved by gRPC and would be dropped or "
            "replaced on the wire; choose another key (for example 'x-' + the name)"
        )
    if key.endswith("-bin"):
        raise SettingsError(
            f"metadata[{index}] key {key!r}: binary metadata (keys ending in '-bin') is not "
            "supported; send the value as text under another key"
        )
    if not _METADATA_VALUE.fullmatch(value):
        # The value itself is not shown: it may be a credential.
        bad = next(i for i, char in enumerate(value) if not " " <= char <= "~")
        raise SettingsError(
            f"metadata[{index}] value for {key!r} has a character gRPC cannot send at "
            f"position {bad}; use printable ASCII only (space to '~', no newlines)"
        )
