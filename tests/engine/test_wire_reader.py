"""The response reader in remsvc_core.wire reads exactly what protobuf reads.

It parses RemResMsg by hand (to decode ``out`` straight from the received bytes),
so every input is checked against protobuf's own parse of the same bytes: messages
the server sends, messages with extra or repeated fields, and arbitrary bytes.
"""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings, strategies as st
from support.wire_reading import Response, decode_response

from remsvc_core import wire

INT32 = st.integers(min_value=-(2**31), max_value=2**31 - 1)


def _protobuf_reading(data: bytes) -> Any:
    """What protobuf makes of ``data``: the fields, decoded leniently, or the error."""
    try:
        message = wire._LenientRemResMsg.FromString(data)
    except Exception as exc:
        return type(exc)
    replaced = False

    def text(raw: bytes) -> str:
        nonlocal replaced
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError:
            replaced = True
            return raw.decode("utf-8", errors="replace")

    out, err, hsh = text(message.out), text(message.err), text(message.hsh)
    return Response(message.tid, message.rc, out, err, hsh, replaced)


def _our_reading(data: bytes) -> Any:
    try:
        return decode_response(data)
    except Exception as exc:
        return type(exc)


def _encode(**fields: Any) -> bytes:
    data: bytes = wire._LenientRemResMsg(**fields).SerializeToString()
    return data


@settings(max_examples=400, deadline=None)
@given(
    rc=INT32,
    tid=INT32,
    out=st.binary(max_size=300),
    err=st.binary(max_size=50),
    hsh=st.binary(max_size=12),
)
def test_messages_read_as_protobuf_reads_them(
    rc: int, tid: int, out: bytes, err: bytes, hsh: bytes
) -> None:
    data = _encode(rc=rc, tid=tid, out=out, err=err, hsh=hsh)
    ours = decode_response(data)
    assert ours == _protobuf_reading(data)
    assert (ours.rc, ours.tid) == (rc, tid)


@settings(max_examples=400, deadline=None)
@given(
    parts=st.lists(
        st.one_of(
            st.builds(lambda v: _encode(rc=v), INT32),
            st.builds(lambda v: _encode(tid=v), INT32),
            st.builds(lambda v: _encode(out=v), st.binary(max_size=40)),
            st.builds(lambda v: _encode(err=v), st.binary(max_size=40)),
            # unknown fields of every wire type, as a newer server might add
            st.just(b"\x30\x05"),
            st.just(b"\x39" + bytes(8)),
            st.just(b"\x3a\x03abc"),
            st.just(b"\x45" + bytes(4)),
            st.just(b"\xf8\x01\x01"),  # field 31: a two-byte tag
            st.just(b"\x08\xff\xff\xff\xff\xff\xff\xff\xff\xff\x01"),  # rc = -1, 10 bytes
            st.just(b"\x10\x80\x80\x80\x80\x10"),  # tid beyond int32: low 32 bits
        ),
        max_size=8,
    )
)
def test_repeated_and_unknown_fields_read_as_protobuf_reads_them(parts: list[bytes]) -> None:
    data = b"".join(parts)
    assert _our_reading(data) == _protobuf_reading(data)


@settings(max_examples=1000, deadline=None)
@given(data=st.binary(max_size=64))
def test_arbitrary_bytes_read_as_protobuf_reads_them(data: bytes) -> None:
    assert _our_reading(data) == _protobuf_reading(data)


@pytest.mark.parametrize(
    "data",
    [
        b"\x1a\x05abc",  # out runs past the end
        b"\x22\x04abc",  # err runs one byte past the end
        b"\x10\xff\xff",  # tid's varint never ends
        b"\x08\x80\x80\x80\x80\x80\x80\x80\x80\x80\x80\x01",  # an 11-byte varint
        b"\x0b",  # a group start (wire type 3)
    ],
)
def test_malformed_bytes_fail_as_protobuf_fails(data: bytes) -> None:
    expected = _protobuf_reading(data)
    assert isinstance(expected, type)
    assert issubclass(expected, Exception)
    with pytest.raises(expected):
        decode_response(data)


def test_large_output_is_decoded_from_the_received_bytes() -> None:
    out = ("é" * 300_000).encode() + b"\xff"
    data = _encode(tid=4, out=out, err=b"warn", hsh=b"cbf43926")
    response = decode_response(data)
    assert response.out == "é" * 300_000 + "\ufffd"
    assert (response.tid, response.err, response.hsh, response.replaced) == (
        4,
        "warn",
        "cbf43926",
        True,
    )
