"""The messages a stream sends: results, and the extension messages of
docs/protocol-extensions.md (live output, heartbeats).

The ``ext`` field is only ever set for a client that was granted an extension; a
classic client gets byte-for-byte the messages upstream sends.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from remsvc_core.server.outcome import ExecResult
from remsvc_core.wire import pb

__all__ = ["MAX_CHUNK", "heartbeat_message", "output_messages", "result_message"]

#: The most bytes one live-output message carries (the contract's bound).
# Large enough that a command printing fast is sent in few messages (each costs the
# same fixed work in gRPC, whatever its size), small enough for any gRPC peer's
# default 4 MiB receive limit.
MAX_CHUNK = 1024 * 1024


def result_message(
    tid: int,
    hsh: str,
    result: ExecResult,
    *,
    detailed: bool = False,
    started_ms: int = 0,
    ended_ms: int = 0,
    replayed: bool = False,
    interrupted: bool = False,
) -> Any:
    """A command's result; with ``detailed`` (some extension was granted), its
    ``ext.result`` too."""
    if not detailed:
        return pb.RemResMsg(rc=result.rc, tid=tid, out=result.out, err=result.err, hsh=hsh)
    detail = pb.ResultExt(
        replayed=replayed,
        started_unix_ms=started_ms,
        ended_unix_ms=ended_ms,
        streamed=result.streamed,
        out_bytes=result.out_size,
        err_bytes=result.err_size,
        out_truncated=result.out_truncated,
        err_truncated=result.err_truncated,
        interrupted=interrupted,
    )
    if result.usage is not None:
        usage = result.usage
        detail.usage.CopyFrom(
            pb.Usage(
                wall_ms=usage.wall_ms,
                user_cpu_ms=usage.user_cpu_ms,
                sys_cpu_ms=usage.sys_cpu_ms,
                max_rss_kb=usage.max_rss_kb or 0,  # 0: not measurable (protocol doc)
            )
        )
    return pb.RemResMsg(
        rc=result.rc,
        tid=tid,
        out=result.out,
        err=result.err,
        hsh=hsh,
        ext=pb.RemResExt(result=detail),
    )


def output_messages(tid: int, fd: int, data: bytes, offset: int) -> Iterator[Any]:
    """``data`` of command ``tid`` as live-output messages of at most :data:`MAX_CHUNK`."""
    view = memoryview(data)
    for start in range(0, len(data), MAX_CHUNK):
        piece = data if len(data) <= MAX_CHUNK else bytes(view[start : start + MAX_CHUNK])
        yield pb.RemResMsg(
            tid=tid,
            ext=pb.RemResExt(output=pb.OutputChunk(fd=fd, data=piece, offset=offset + start)),
        )


def heartbeat_message(running: Mapping[int, int]) -> Any:
    """Which commands still run: tid -> milliseconds since each started."""
    return pb.RemResMsg(
        tid=0,
        ext=pb.RemResExt(
            heartbeat=pb.Heartbeat(
                running=[pb.Running(tid=tid, elapsed_ms=ms) for tid, ms in running.items()]
            )
        ),
    )
