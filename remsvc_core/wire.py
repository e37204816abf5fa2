"""The generated stubs, plus the one thing they cannot do: read ``out``/``err`` leniently.

``RemResMsg.out`` and ``.err`` are declared ``string``, but the upstream C++ server
puts the child's raw bytes there. protobuf refuses invalid UTF-8 in a ``string``
field and grpcio then fails the whole call, losing every later result. On the wire
``string`` and ``bytes`` are the same, so the client parses responses with a twin
message whose text fields are ``bytes`` and decodes them itself.
"""

from __future__ import annotations

from dataclasses import dataclass
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


@dataclass(frozen=True, slots=True)
class RawResponse:
    """A ``RemResMsg`` read leniently; ``replaced`` tells that bytes were not UTF-8."""

    tid: int
    rc: int
    out: str
    err: str
    hsh: str
    replaced: bool


def _decode(data: bytes) -> tuple[str, bool]:
    try:
        return data.decode("utf-8"), False
    except UnicodeDecodeError:
        return data.decode("utf-8", errors="replace"), True


def decode_response(data: bytes) -> RawResponse:
    """gRPC response deserializer for ``RemResMsg`` that never fails on bad UTF-8."""
    message = _LenientRemResMsg.FromString(data)
    out, out_replaced = _decode(message.out)
    err, err_replaced = _decode(message.err)
    hsh, hsh_replaced = _decode(message.hsh)
    return RawResponse(
        tid=message.tid,
        rc=message.rc,
        out=out,
        err=err,
        hsh=hsh,
        replaced=out_replaced or err_replaced or hsh_replaced,
    )


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
