"""A command's output assembled from live chunks (``output/1``), in small memory.

With ``output/1`` granted, the server sends stdout and stderr as they are produced
and the result itself carries neither. :class:`OutputAssembler` puts each stream
back together: in memory up to ``spill_bytes``, then in a file under ``spill_dir``,
so a command that prints a gigabyte costs the client a few chunks of memory. The
text of a result kept in memory is exactly what the classic protocol gives (UTF-8
with invalid bytes replaced, the cap's marker when the server cut it); a spilled
stream is the raw bytes in a file, with their SHA-256.
"""

from __future__ import annotations

import codecs
import hashlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

__all__ = [
    "DEFAULT_SPILL_BYTES",
    "OutputAssembler",
    "OutputChunk",
    "StreamText",
    "truncated_at",
]

STDOUT, STDERR = 1, 2
STREAM_NAMES = {STDOUT: "stdout", STDERR: "stderr"}
#: Past this many bytes of one stream, output goes to a file (when a directory is set).
DEFAULT_SPILL_BYTES = 8 * 1024 * 1024


def truncation_marker(cap: int) -> str:
    """The exact text a RemSvc server appends to output cut at ``cap`` bytes."""
    return f"\n\x01[remSvc: output truncated at {cap} bytes]\x01\n"


_MARKER_END = "]\x01\n"
_MARKER_START = "\n\x01[remSvc: output truncated at "


def truncated_at(text: str) -> int | None:
    """The cap (bytes) when ``text`` ends with a RemSvc server's truncation marker."""
    if not text.endswith(_MARKER_END):
        return None
    start = text.rfind(_MARKER_START)
    if start < 0:
        return None
    number = text[start + len(_MARKER_START) : -len(_MARKER_END)].removesuffix(" bytes")
    return int(number) if number.isdigit() else None


def capped_text(data: bytes | bytearray, truncated: bool, cap: int) -> str:
    """Output bytes as result text, by the classic rules: UTF-8 with invalid bytes
    replaced; when the cap cut it, a character split by the cut is dropped and the
    marker appended."""
    if not truncated:
        return data.decode("utf-8", "replace")
    decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
    return decoder.decode(data, final=False) + truncation_marker(cap)


@dataclass(frozen=True, slots=True)
class OutputChunk:
    """A piece of a running command's output, as ``remsvc_output`` hooks receive it.

    ``stream`` is ``"stdout"`` or ``"stderr"``; ``data`` the raw bytes (a chunk may
    end inside a multi-byte character or a line); ``offset`` where ``data`` starts in
    that stream. :attr:`text` decodes it leniently.
    """

    tid: int
    stream: str
    data: bytes
    offset: int

    @property
    def text(self) -> str:
        return self.data.decode("utf-8", "replace")


@dataclass(frozen=True, slots=True)
class StreamText:
    """One finished stream: its text in memory, or the file it was spilled to."""

    text: str
    path: str | None = None
    size: int = 0
    sha256: str | None = None


class _Sink:
    __slots__ = ("file", "hasher", "memory", "path", "size")

    def __init__(self) -> None:
        self.memory = bytearray()
        self.size = 0
        # Only a spilled stream needs its hash (the result names the file and its
        # SHA-256); hashing every in-memory chunk cost a third of the client's CPU.
        self.hasher: Any = None
        self.file: IO[bytes] | None = None
        self.path: str | None = None


class OutputAssembler:
    """Puts each command's stdout and stderr back together from chunks."""

    def __init__(
        self, *, spill_dir: str | os.PathLike[str] | None = None, spill_bytes: int | None = None
    ) -> None:
        self.spill_dir = Path(spill_dir) if spill_dir is not None else None
        self.spill_bytes = DEFAULT_SPILL_BYTES if spill_bytes is None else spill_bytes
        self._sinks: dict[tuple[int, int], _Sink] = {}
        self._label = os.urandom(4).hex()

    def add(self, tid: int, fd: int, data: bytes, offset: int) -> OutputChunk | None:
        """Add a chunk; returns the part that was new (None if it was all seen before:
        a chunk sent again after a re-attach), as a chunk for the hooks."""
        if fd not in STREAM_NAMES:
            return None
        sink = self._sinks.get((tid, fd))
        if sink is None:
            sink = self._sinks[(tid, fd)] = _Sink()
        if offset > sink.size:
            return None  # a gap can only come from a faulty server; never invent bytes
        new = data[sink.size - offset :] if offset < sink.size else data
        if not new:
            return None
        start = sink.size
        sink.size += len(new)
        if sink.file is not None:
            sink.hasher.update(new)
            sink.file.write(new)
        else:
            sink.memory += new
            if self.spill_dir is not None and sink.size > self.spill_bytes:
                self._spill(tid, fd, sink)
        return OutputChunk(tid, STREAM_NAMES[fd], bytes(new), start)

    def _spill(self, tid: int, fd: int, sink: _Sink) -> None:
        assert self.spill_dir is not None
        self.spill_dir.mkdir(parents=True, exist_ok=True)
        path = self.spill_dir / f"remsvc-{self._label}-tid{tid}.{STREAM_NAMES[fd]}"
        sink.file = open(path, "wb")  # noqa: SIM115 - stays open until finish()
        sink.file.write(sink.memory)
        sink.hasher = hashlib.sha256(sink.memory)
        sink.path = str(path)
        sink.memory = bytearray()

    def finish(self, tid: int, fd: int, *, truncated: bool, kept_bytes: int) -> StreamText:
        """The stream's final form once its result arrived; forgets the stream."""
        sink = self._sinks.pop((tid, fd), None) or _Sink()
        if sink.file is None:
            return StreamText(capped_text(sink.memory, truncated, kept_bytes), size=sink.size)
        sink.file.close()
        return StreamText("", sink.path, sink.size, sink.hasher.hexdigest())

    def discard(self) -> None:
        """Close what is still open (the stream ended before these results came)."""
        for sink in self._sinks.values():
            if sink.file is not None:
                sink.file.close()
        self._sinks.clear()
