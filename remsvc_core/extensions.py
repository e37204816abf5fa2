"""Negotiated protocol extensions: the tokens, the metadata keys, and their parsing.

One module for both sides: the client asks with :func:`request_metadata` and reads
the answer with :func:`granted_by`; the server reads the question with
:func:`asked_for` and answers with :func:`grant_metadata`. The contract is
docs/protocol-extensions.md.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

from remsvc_core.errors import SettingsError

__all__ = [
    "ATTACHED_ELSEWHERE",
    "BATCH",
    "BATCH_KEY_KEY",
    "EXTENSIONS_KEY",
    "HEARTBEAT",
    "HEARTBEAT_MS_KEY",
    "KEY_REUSED",
    "OUTPUT",
    "USAGE",
    "Request",
    "Wanted",
    "asked_for",
    "check_batch_key",
    "grant_metadata",
    "granted_by",
    "request_metadata",
]

BATCH = "batch/1"
OUTPUT = "output/1"
HEARTBEAT = "heartbeat/1"
USAGE = "usage/1"
KNOWN = (BATCH, OUTPUT, HEARTBEAT, USAGE)

EXTENSIONS_KEY = "remsvc-extensions"
BATCH_KEY_KEY = "remsvc-batch-key"
HEARTBEAT_MS_KEY = "remsvc-heartbeat-ms"

#: Status details that start a refusal of a second stream on an attached batch.
ATTACHED_ELSEWHERE = "batch attached elsewhere"
#: Status details that start a refusal of a key used for a different batch.
KEY_REUSED = "batch key reused"
#: Status details of a re-attach to a cancelled batch.
CANCELLED_BATCH = "batch cancelled"

HEARTBEAT_MIN_MS = 1_000
HEARTBEAT_MAX_MS = 300_000
_BATCH_KEY = re.compile(r"[A-Za-z0-9._:/-]{1,200}")
_TOKEN_SPLIT = re.compile(r"[\s,]+")


def check_batch_key(key: object) -> str:
    """``key`` if it can name a batch, else :class:`SettingsError` saying what can."""
    if not isinstance(key, str) or not _BATCH_KEY.fullmatch(key):
        shown = repr(key) if isinstance(key, str) and len(key) <= 60 else type(key).__name__
        raise SettingsError(
            f"batch key {shown} is not 1 to 200 characters of A-Z a-z 0-9 . _ : - /; "
            "derive it from what identifies the batch, e.g. 'nightly-backup:2026-12-05:<hash>'"
        )
    return key


def _tokens(value: str) -> list[str]:
    return [token for token in _TOKEN_SPLIT.split(value.strip()) if token]


@dataclass(frozen=True)
class Request:
    """What a client asked for on one call."""

    extensions: frozenset[str] = frozenset()
    batch_key: str | None = None
    heartbeat_ms: int | None = None

    @property
    def asked(self) -> bool:
        return bool(self.extensions)


@dataclass(frozen=True)
class Wanted:
    """What a client stream asks of the server beyond the classic protocol."""

    batch_key: str | None = None
    output: bool = False
    heartbeat_s: float | None = None
    usage: bool = False

    def tokens(self) -> list[str]:
        """The extensions asked for, in the order of :data:`KNOWN`."""
        asked = {
            BATCH: self.batch_key is not None,
            OUTPUT: self.output,
            HEARTBEAT: self.heartbeat_s is not None,
            USAGE: self.usage,
        }
        return [token for token in KNOWN if asked[token]]

    def metadata(self) -> list[tuple[str, str]]:
        """The call metadata that asks for them (empty when nothing is wanted); raises
        :class:`SettingsError` for a key or an interval that cannot be asked for."""
        tokens = self.tokens()
        if not tokens:
            return []
        metadata = [(EXTENSIONS_KEY, ", ".join(tokens))]
        if self.batch_key is not None:
            metadata.append((BATCH_KEY_KEY, check_batch_key(self.batch_key)))
        if self.heartbeat_s is not None:
            milliseconds = round(self.heartbeat_s * 1000)
            if not HEARTBEAT_MIN_MS <= milliseconds <= HEARTBEAT_MAX_MS:
                raise SettingsError(
                    f"heartbeat_s must be from {HEARTBEAT_MIN_MS // 1000} to "
                    f"{HEARTBEAT_MAX_MS // 1000} seconds, got {self.heartbeat_s!r}"
                )
            metadata.append((HEARTBEAT_MS_KEY, str(milliseconds)))
        return metadata


def request_metadata(
    *, batch_key: str | None, output: bool, heartbeat_s: float | None, usage: bool
) -> list[tuple[str, str]]:
    """The call metadata that asks for these extensions (empty when none is wanted)."""
    return Wanted(batch_key, output, heartbeat_s, usage).metadata()


def granted_by(initial_metadata: Iterable[tuple[str, str | bytes]] | None) -> frozenset[str]:
    """The extensions a server granted, read from its initial metadata."""
    for key, value in initial_metadata or ():
        if key == EXTENSIONS_KEY:
            text = value.decode("ascii", "replace") if isinstance(value, bytes) else value
            return frozenset(token for token in _tokens(text) if token in KNOWN)
    return frozenset()


def asked_for(invocation_metadata: Iterable[tuple[str, str | bytes]] | None) -> Request:
    """What a call asked for (server side). Malformed parameters are simply not
    granted: asking must never make a call fail."""
    values: dict[str, str] = {}
    for key, value in invocation_metadata or ():
        if key in (EXTENSIONS_KEY, BATCH_KEY_KEY, HEARTBEAT_MS_KEY) and key not in values:
            values[key] = value.decode("ascii", "replace") if isinstance(value, bytes) else value
    if EXTENSIONS_KEY not in values:
        return Request()
    asked = {token for token in _tokens(values[EXTENSIONS_KEY]) if token in KNOWN}
    batch_key = values.get(BATCH_KEY_KEY)
    if BATCH in asked and (batch_key is None or not _BATCH_KEY.fullmatch(batch_key)):
        asked.discard(BATCH)
        batch_key = None
    heartbeat_ms = None
    if HEARTBEAT in asked:
        text = values.get(HEARTBEAT_MS_KEY, "")
        heartbeat_ms = int(text) if text.isdigit() else None
        if heartbeat_ms is None or not HEARTBEAT_MIN_MS <= heartbeat_ms <= HEARTBEAT_MAX_MS:
            asked.discard(HEARTBEAT)
            heartbeat_ms = None
    return Request(
        extensions=frozenset(asked),
        batch_key=batch_key if BATCH in asked else None,
        heartbeat_ms=heartbeat_ms,
    )


def grant_metadata(granted: Iterable[str]) -> tuple[tuple[str, str], ...]:
    """The server's initial metadata granting ``granted`` (sent only to a client
    that asked, possibly granting nothing)."""
    return ((EXTENSIONS_KEY, ", ".join(token for token in KNOWN if token in set(granted))),)
