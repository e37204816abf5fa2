"""Responses read by the engine's wire reader, with named fields for assertions.

The engine reads each response as a plain tuple (``wire.read_response``), the
cheapest record to build once per result; tests want to name the fields.
"""

from __future__ import annotations

from typing import Any, NamedTuple

from remsvc_core import wire


class Response(NamedTuple):
    tid: int
    rc: int
    out: str
    err: str
    hsh: str
    replaced: bool
    ext: Any = None


def decode_response(data: bytes) -> Response:
    return Response(*wire.read_response(data))
