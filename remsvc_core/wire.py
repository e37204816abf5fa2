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

from typing import Any

from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

try:
    from remsvc_core._proto import RemSvc_pb2 as pb, RemSvc_pb2_grpc as pb_grpc
except ImportError as exc:  # pragma: no cover - only in a checkout that was never built
    raise ImportError(
        "remsvc's gRPC stubs are missing: they are generated when the package is built. "
        "Install it with `pip install .` (or `pip install -e .` in a checkout)."
    ) from exc

from remsvc_core.commands import Command
from remsvc_core.errors import CommandValidationError

__all__ = [
    "METHOD_PING",
    "METHOD_REMCMD",
    "METHOD_STATUS",
    "METHOD_STREAM",
    "ResponseFields",
    "encode_batch",
    "encode_command",
    "pb",
    "pb_grpc",
    "read_response",
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
        # The extension field (docs/protocol-extensions.md), read as its raw bytes
        # (a message and bytes are the same on the wire) and parsed by the real class.
        ("ext", 16, fields.TYPE_BYTES),
    ):
        message.field.add(name=name, number=number, type=kind, label=fields.LABEL_OPTIONAL)
    # A private pool: nothing else in the process can clash with these names.
    pool = descriptor_pool.DescriptorPool()
    pool.Add(proto)
    return message_factory.GetMessageClass(
        pool.FindMessageTypeByName("remsvc_lenient.RemResMsgBytes")
    )


_LenientRemResMsg = _lenient_response_class()


# Tags (field number << 3 | wire type) of RemResMsg's fields, each one byte.
_TAG_RC = 1 << 3 | 0  # varint
_TAG_TID = 2 << 3 | 0
_TAG_OUT = 3 << 3 | 2  # length-delimited
_TAG_ERR = 4 << 3 | 2
_TAG_HSH = 5 << 3 | 2
_TEXT_TAGS = (_TAG_OUT, _TAG_ERR, _TAG_HSH)
_NUMBER_TAGS = (_TAG_RC, _TAG_TID)
_VARINT_MAX_SHIFT = 63  # a varint has at most 10 bytes (7 bits each)

#: A ``RemResMsg`` read leniently, as a plain tuple (the cheapest record to build, and
#: one is built per result): (tid, rc, out, err, hsh, replaced, ext), where
#: ``replaced`` tells that ``out``/``err``/``hsh`` held bytes that were not UTF-8 and
#: ``ext`` is the extension field (``pb.RemResExt``), or None when it was not sent.
ResponseFields = tuple[int, int, str, str, str, bool, Any]


def read_response(data: bytes) -> ResponseFields:
    """A ``RemResMsg``'s fields, never failing on bad UTF-8: (tid, rc, out, err, hsh, replaced).

    It runs once per result,
    so the common case is one function that calls no Python function of its own:
    measured inside a running stream, each call was worth about 1 µs of client CPU.
    Repeated fields: the last one wins, as in protobuf.
    """
    view = memoryview(data)
    end = len(data)
    pos = 0
    rc = tid = 0
    out: bytes | memoryview = b""
    err: bytes | memoryview = b""
    hsh: bytes | memoryview = b""
    try:
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
                    return _read_with_protobuf(data)
            if tag in _TEXT_TAGS:
                stop = pos + value
                if stop > end:
                    return _read_with_protobuf(data)  # truncated: protobuf's error
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
                return _read_with_protobuf(data)  # another field, wire type, long tag
    except IndexError:  # the bytes end inside a varint
        return _read_with_protobuf(data)
    try:
        return tid, rc, str(out, "utf-8"), str(err, "utf-8"), str(hsh, "utf-8"), False, None
    except UnicodeDecodeError:
        return _lenient_fields(tid, rc, None, out, err, hsh)


def _read_with_protobuf(data: bytes) -> ResponseFields:
    """Anything :func:`read_response` does not expect, read (or refused) by protobuf:
    odd encodings, unknown fields, and the extension field."""
    message = _LenientRemResMsg.FromString(data)
    ext = pb.RemResExt.FromString(message.ext) if message.ext else None
    return _lenient_fields(message.tid, message.rc, ext, message.out, message.err, message.hsh)


def _lenient_fields(tid: int, rc: int, ext: Any, *texts: bytes | memoryview) -> ResponseFields:
    replaced = False
    decoded: list[str] = []
    for text in texts:
        try:
            decoded.append(str(text, "utf-8"))
        except UnicodeDecodeError:
            decoded.append(str(text, "utf-8", "replace"))
            replaced = True
    out, err, hsh = decoded
    return tid, rc, out, err, hsh, replaced, ext


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


def encode_batch(batch: list[Command]) -> list[bytes]:
    """Each command of ``batch`` encoded for the wire, in the same order.

    Encoded once, before the stream opens: the send window needs each command's size,
    the call then writes these bytes as they are (no request serializer), and a
    command that cannot be encoded is refused before anything is sent.
    """
    encoded: list[bytes] = []
    for command in batch:
        try:
            encoded.append(encode_command(command))
        except UnicodeEncodeError as exc:
            raise CommandValidationError(
                f"commands[{command.tid - 1}].cmd (tid {command.tid}) cannot be encoded as "
                f"UTF-8 ({exc.reason} at position {exc.start}); remove the lone surrogate"
            ) from exc
    return encoded
