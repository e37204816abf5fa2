"""The generated stubs, plus the one thing they cannot do: read ``out``/``err`` leniently.

``RemResMsg.out`` and ``.err`` are declared ``string``, but the upstream C++ server
puts the child's raw bytes there. protobuf refuses invalid UTF-8 in a ``string``
field and grpcio then fails the whole call, losing every later result. On the wire
``string`` and ``bytes`` are the same, so the client reads responses itself and
decodes the text fields leniently.

It reads the five fields straight from the received bytes: each text field is
decoded from a memoryview of them, so a 64 MiB output is copied once (into its
``str``) instead of three times through protobuf. Anything it does not expect
(unknown fields, a wrong wire type, truncated bytes) goes to protobuf instead, via a
twin message whose text fields are ``bytes``, so odd input reads exactly as
protobuf reads it and malformed input fails with protobuf's own error.
"""

from __future__ import annotations

from typing import Any, NamedTuple

from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

try:
    from remsvc_core._proto import RemSvc_pb2 as pb, RemSvc_pb2_grpc as pb_grpc
except ImportError as exc:  # pragma: no cover - only in a checkout that was never built
    raise ImportError(
        "remsvc's gRPC stubs are missing: they are generated when the package is built. "
        "Install it with `pip install .` (or `pip install -e .` in a checkout)."
    ) from exc

from remsvc_core.commands import Command

__all__ = [
    "METHOD_PING",
    "METHOD_REMCMD",
    "METHOD_STATUS",
    "METHOD_STREAM",
    "RawResponse",
    "pb",
    "pb_grpc",
]

SERVICE = "RS.RemSvc"
METHOD_PING = f"/{SERVICE}/Ping"
METHOD_STATUS = f"/{SERVICE}/GetStatus"
METHOD_REMCMD = f"/{SERVICE}/RemCmd"
METHOD_STREAM = f"/{SERVICE}/RemCmdStrm"


def _lenient_response_class() -> Any:
    proto = descriptor_pb2.FileDescriptorProto(
        name="remsvc_core/lenient_response.proto", package="remsvc_lenient", syntax="proto3"
    )
    message = proto.message_type.add(name="RemResMsgBytes")
    fields = descriptor_pb2.FieldDescriptorProto
    for name, number, kind in (
        ("rc", 1, fields.TYPE_INT32),
        ("tid", 2, fields.TYPE_INT32),
        ("out", 3, fields.TYPE_BYTES),
        ("err", 4, fields.TYPE_BYTES),
        ("hsh", 5, fields.TYPE_BYTES),
    ):
        message.field.add(name=name, number=number, type=kind, label=fields.LABEL_OPTIONAL)
    # A private pool: nothing else in the process can clash with these names.
    pool = descriptor_pool.DescriptorPool()
    pool.Add(proto)
    return message_factory.GetMessageClass(
        pool.FindMessageTypeByName("remsvc_lenient.RemResMsgBytes")
    )


_LenientRemResMsg = _lenient_response_class()


class RawResponse(NamedTuple):
    """A ``RemResMsg`` read leniently; ``replaced`` tells that bytes were not UTF-8.

    A named tuple rather than a dataclass: one is built per result, and this is the
    cheapest immutable record to build.
    """

    tid: int
    rc: int
    out: str
    err: str
    hsh: str
    replaced: bool


# Tags (field number << 3 | wire type) of RemResMsg's fields, each one byte.
_TAG_RC = 1 << 3 | 0  # varint
_TAG_TID = 2 << 3 | 0
_TAG_OUT = 3 << 3 | 2  # length-delimited
_TAG_ERR = 4 << 3 | 2
_TAG_HSH = 5 << 3 | 2
_TEXT_TAGS = (_TAG_OUT, _TAG_ERR, _TAG_HSH)
_NUMBER_TAGS = (_TAG_RC, _TAG_TID)
_VARINT_MAX_SHIFT = 63  # a varint has at most 10 bytes (7 bits each)

_Fields = tuple[int, int, "bytes | memoryview", "bytes | memoryview", "bytes | memoryview"]


def _read_fields(data: bytes) -> _Fields | None:
    """rc, tid, out, err, hsh of a RemResMsg; out/err/hsh are views into ``data``.

    None when the bytes hold anything but these five fields with their own wire
    types (protobuf then reads them). Raises IndexError when the bytes end inside a
    field. Repeated fields: the last one wins, as in protobuf.
    """
    view = memoryview(data)
    end = len(data)
    pos = 0
    rc = tid = 0
    out: bytes | memoryview = b""
    err: bytes | memoryview = b""
    hsh: bytes | memoryview = b""
    while pos < end:
        tag = data[pos]
        pos += 1
        value = 0
        shift = 0
        while True:  # the varint after the tag: a number or a length
            byte = data[pos]
            pos += 1
            value |= (byte & 0x7F) << shift
            if byte < 0x80:
                break
            shift += 7
            if shift > _VARINT_MAX_SHIFT:
                return None
        if tag in _TEXT_TAGS:
            stop = pos + value
            if stop > end:
                raise IndexError("a length-delimited field runs past the end")
            if tag == _TAG_OUT:
                out = view[pos:stop]
            elif tag == _TAG_ERR:
                err = view[pos:stop]
            else:
                hsh = view[pos:stop]
            pos = stop
        elif tag in _NUMBER_TAGS:
            # int32: protobuf keeps the low 32 bits, as a signed number.
            value &= 0xFFFFFFFF
            if value >= 0x80000000:
                value -= 0x100000000
            if tag == _TAG_RC:
                rc = value
            else:
                tid = value
        else:
            return None  # another field, wire type or a multi-byte tag
    return rc, tid, out, err, hsh


def _text(data: bytes | memoryview) -> tuple[str, bool]:
    """``data`` as UTF-8, invalid bytes replaced by U+FFFD; True when any were."""
    if not data:
        return "", False
    try:
        return str(data, "utf-8"), False
    except UnicodeDecodeError:
        return str(data, "utf-8", "replace"), True


def decode_response(data: bytes) -> RawResponse:
    """gRPC response deserializer for ``RemResMsg`` that never fails on bad UTF-8."""
    try:
        fields = _read_fields(data)
    except IndexError:
        fields = None  # truncated: protobuf raises its own DecodeError below
    if fields is None:
        message = _LenientRemResMsg.FromString(data)
        fields = (message.rc, message.tid, message.out, message.err, message.hsh)
    rc, tid, out_bytes, err_bytes, hsh_bytes = fields
    out, out_replaced = _text(out_bytes)
    err, err_replaced = _text(err_bytes)
    hsh, hsh_replaced = _text(hsh_bytes)
    return RawResponse(tid, rc, out, err, hsh, out_replaced or err_replaced or hsh_replaced)


def encode_command(command: Command) -> bytes:
    """gRPC request serializer: a :class:`Command` as a ``RemCmdMsg``."""
    return pb.RemCmdMsg(
        cmd=command.cmd,
        cmdtyp=command.cmdtyp,
        cmdusr=command.cmdusr,
        tid=command.tid,
        src=command.src,
        hsh=command.hsh,
    ).SerializeToString()
