"""The connections of a fan-out task: ``grpc_conn_ids`` read into ``(label, conn_id)``.

A DAG author gives connection ids in the shape they have them: a list (each host is
labelled by its connection id), a mapping of labels to connection ids, or, after
templating, text holding either as JSON (or a Python literal, as Jinja renders a list),
or ids separated by commas or whitespace. Upstream tasks' XCom gives a list or a
mapping too. Two hosts may not share a label, and the list may not be empty.
"""

from __future__ import annotations

import ast
import json
import re
from collections.abc import Iterable, Mapping
from typing import Any

from remsvc_core.errors import SettingsError
from remsvc_core.fleet.targets import check_label

__all__ = ["host_connections"]

_SEPARATORS = re.compile(r"[\s,]+")
_FORMS = (
    "give a list of connection ids, a mapping of host labels to connection ids, or "
    "text holding either as JSON"
)


def host_connections(value: Any) -> list[tuple[str, str]]:
    """``value`` as ``[(label, conn_id), ...]`` in the order given; :class:`SettingsError`
    naming the entry for anything else."""
    items = _items(value)
    if not items:
        raise SettingsError(f"grpc_conn_ids is empty; {_FORMS}")
    pairs = [_pair(item, index) for index, item in enumerate(items)]
    seen: dict[str, int] = {}
    for index, (label, _) in enumerate(pairs):
        if label in seen:
            raise SettingsError(
                f"grpc_conn_ids[{seen[label]}] and grpc_conn_ids[{index}] both name host "
                f"{label!r}; list each connection once (or give distinct labels in a mapping)"
            )
        seen[label] = index
    return pairs


def _items(value: Any) -> list[Any]:
    if isinstance(value, str):
        text = value.strip()
        if text[:1] in ("[", "{"):
            return _items(_parse(text))
        return [part for part in _SEPARATORS.split(text) if part]
    if isinstance(value, Mapping):
        return list(value.items())
    if isinstance(value, Iterable) and not isinstance(value, bytes):
        return list(value)  # a list, or the lazy sequence an upstream task's XCom gives
    raise SettingsError(f"grpc_conn_ids is a {type(value).__name__}; {_FORMS}")


def _parse(text: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        error = exc
    try:  # Jinja renders a Python list as its repr
        return ast.literal_eval(text)
    except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
        raise SettingsError(
            f"grpc_conn_ids {text[:80]!r} looks like JSON but does not parse: {error}"
        ) from None


def _pair(item: Any, index: int) -> tuple[str, str]:
    if isinstance(item, str):
        label = conn_id = item.strip()
    elif isinstance(item, (tuple, list)) and len(item) == 2:
        label, conn_id = item
    else:
        raise SettingsError(f"grpc_conn_ids[{index}] is {item!r}; {_FORMS}")
    if not isinstance(conn_id, str) or not conn_id.strip():
        raise SettingsError(
            f"grpc_conn_ids[{index}]: a connection id must be a non-empty string, got {conn_id!r}"
        )
    try:
        return check_label(label), conn_id.strip()
    except SettingsError as exc:
        raise SettingsError(f"grpc_conn_ids[{index}]: {exc}") from None
