"""gRPC call metadata: what a caller may send, normalised once.

gRPC refuses some keys and values only when a call is made (or silently drops them);
checking here turns that into a :class:`SettingsError` naming the entry and the fix.
``user_metadata`` is the one place of the rule that a bearer token never goes into
metadata a user typed.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

from remsvc_core.errors import SettingsError

__all__ = ["normalise_metadata", "user_metadata"]


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
