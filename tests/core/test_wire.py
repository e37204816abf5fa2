"""The wire contract: exact field numbers, and a lenient reader for non-UTF-8 output."""

from __future__ import annotations

import doctest
from typing import Any

from support.wire_reading import decode_response

import remsvc_core.hashing
from remsvc_core.commands import Command
from remsvc_core.wire import encode_command, pb


def test_crc32_examples_from_the_protocol() -> None:
    assert doctest.testmod(remsvc_core.hashing).failed == 0


def test_field_numbers_match_the_upstream_contract() -> None:
    expected = {
        "PingMsg": {"seq": (1, "int32"), "time": (2, "int64"), "data": (3, "bytes")},
        "PongMsg": {"seq": (1, "int32"), "time": (2, "int64"), "data": (3, "bytes")},
        "StatusMsg": {"rc": (1, "int32"), "msg": (2, "string")},
        "RemCmdMsg": {
            "cmd": (1, "string"),
            "cmdtyp": (2, "int32"),
            "cmdusr": (3, "string"),
            "tid": (4, "int32"),
            "src": (5, "string"),
            "hsh": (6, "string"),
        },
        "RemResMsg": {
            "rc": (1, "int32"),
            "tid": (2, "int32"),
            "out": (3, "string"),
            "err": (4, "string"),
            "hsh": (5, "string"),
            # The one extension field (docs/protocol-extensions.md): a number the
            # classic contract does not use, only ever set for a client that asked.
            "ext": (16, "RS.RemResExt"),
        },
        "Empty": {},
    }
    type_names = {5: "int32", 3: "int64", 12: "bytes", 9: "string"}

    def type_of(field: Any) -> str:
        return field.message_type.full_name if field.message_type else type_names[field.type]

    for message, fields in expected.items():
        descriptor = pb.DESCRIPTOR.message_types_by_name[message]
        assert descriptor.full_name == f"RS.{message}"
        actual = {f.name: (f.number, type_of(f)) for f in descriptor.fields}
        assert actual == fields, message
    service = pb.DESCRIPTOR.services_by_name["RemSvc"]
    assert service.full_name == "RS.RemSvc"
    stream = service.methods_by_name["RemCmdStrm"]
    assert stream.client_streaming
    assert stream.server_streaming


def test_command_encodes_with_hash() -> None:
    data = encode_command(Command(tid=3, cmd="123456789", src="t"))
    message = pb.RemCmdMsg.FromString(data)
    assert (message.tid, message.hsh, message.src) == (3, "cbf43926", "t")


def test_invalid_utf8_output_is_replaced_not_fatal() -> None:
    # Field 3 (out) carrying 0xff 0xfe, exactly what the upstream server can send.
    raw = bytes([0x08, 0x00, 0x10, 0x02, 0x1A, 0x02, 0xFF, 0xFE, 0x22, 0x01, 0x65])
    response = decode_response(raw)
    assert response.tid == 2
    assert response.out == "\ufffd\ufffd"
    assert response.err == "e"
    assert response.replaced is True


def test_valid_utf8_round_trips_unflagged() -> None:
    data = pb.RemResMsg(rc=7, tid=9, out="héllo", err="", hsh="cbf43926").SerializeToString()
    response = decode_response(data)
    assert (response.rc, response.tid, response.out, response.hsh, response.replaced) == (
        7,
        9,
        "héllo",
        "cbf43926",
        False,
    )
