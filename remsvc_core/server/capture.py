"""A command's output: each pipe kept up to a cap, drained past it, marked when cut.

A pipe keeps at most ``cap`` bytes and is read to its end past the cap, so a chatty
child never blocks on a full pipe. Output cut at the cap ends with upstream's
marker; output that is not UTF-8 is decoded with replacement characters, so a
response is always valid UTF-8.
"""

from __future__ import annotations

import codecs
import os

__all__ = ["READ_SIZE", "OutputCapture", "read_pipe", "truncation_marker"]

# One read per readiness event, as asyncio's pipe transports do.
READ_SIZE = 256 * 1024


def truncation_marker(cap: int) -> str:
    """The exact text upstream appends to output cut at ``cap`` bytes."""
    return f"\n\x01[remSvc: output truncated at {cap} bytes]\x01\n"


class OutputCapture:
    """Collects up to ``cap`` bytes of one pipe and throws the rest away."""

    __slots__ = ("cap", "data", "truncated")

    def __init__(self, cap: int) -> None:
        self.cap = cap
        self.data = bytearray()
        self.truncated = False

    def add(self, chunk: bytes) -> None:
        room = self.cap - len(self.data)
        if len(chunk) <= room:
            self.data += chunk
            return
        if room > 0:
            self.data += chunk[:room]
        self.truncated = True

    def text(self) -> str:
        if not self.truncated:
            return self.data.decode("utf-8", "replace")
        # A cut can split a multi-byte character; drop the stump rather than show U+FFFD.
        decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        return decoder.decode(self.data, final=False) + truncation_marker(self.cap)


def read_pipe(fd: int, capture: OutputCapture) -> bool:
    """Read what the (non-blocking) pipe holds into ``capture``; True at end of file."""
    # After a chunk, read once more: a command that printed and exited has usually
    # closed the pipe already, and seeing that now saves a loop turn.
    for _ in range(2):
        try:
            chunk = os.read(fd, READ_SIZE)
        except BlockingIOError:
            return False
        except OSError:
            return True
        if not chunk:
            return True
        capture.add(chunk)
    return False
