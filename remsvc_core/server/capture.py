"""A command's output: each pipe kept up to a cap, drained past it, marked when cut.

A pipe keeps at most ``cap`` bytes and is read to its end past the cap, so a chatty
child never blocks on a full pipe. Output cut at the cap ends with upstream's
marker; output that is not UTF-8 is decoded with replacement characters, so a
response is always valid UTF-8.

With live output (``output/1``) the bytes within the cap are handed on as they are
read (``forward``) and not kept: a command may print gigabytes in small memory.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Callable

from remsvc_core.output import capped_text, truncation_marker

__all__ = ["CLASSIC_CAP", "READ_SIZE", "OutputCapture", "read_pipe", "truncation_marker"]

READ_SIZE = 256 * 1024
#: A pipe holds 64 KiB, so a fast writer wakes the server every 64 KiB. Once a command
#: has printed this much, its pipe is grown to GROWN_PIPE: a sixteenth of the wake-ups
#: for big outputs, and no kernel memory reserved for the many commands that print
#: little (the per-user pipe budget, fs.pipe-user-pages-soft, is shared).
GROW_PIPE_AFTER = 1024 * 1024
GROWN_PIPE = 1024 * 1024
# Enough reads to empty a grown pipe and see its end of file in the same wake-up.
_READS_PER_WAKE = GROWN_PIPE // READ_SIZE + 1
#: The most a classic result carries of stdout and of stderr, whatever output_cap_bytes
#: says: both go in one message, and gRPC messages stop at 2 GiB. Clients that take live
#: output (output/1) get up to the full cap, since their output never rides in one.
CLASSIC_CAP = 256 * 1024 * 1024


class OutputCapture:
    """Collects up to ``cap`` bytes of one pipe and throws the rest away.

    With ``forward``, the bytes within the cap go there as they arrive instead of being
    kept; ``size`` counts them either way.
    """

    __slots__ = ("cap", "data", "forward", "grown", "size", "truncated")

    def __init__(self, cap: int, forward: Callable[[bytes], None] | None = None) -> None:
        self.cap = cap
        self.data = bytearray()
        self.forward = forward
        self.size = 0
        self.truncated = False
        self.grown = False

    def add(self, chunk: bytes) -> None:
        room = self.cap - self.size
        if len(chunk) > room:
            self.truncated = True
            if room <= 0:
                return
            chunk = chunk[:room]
        self.size += len(chunk)
        if self.forward is None:
            self.data += chunk
        else:
            self.forward(chunk)

    def text(self) -> str:
        """The kept output as result text (empty when it was forwarded). A cut can split
        a multi-byte character: the stump is dropped rather than shown as U+FFFD."""
        return capped_text(self.data, self.truncated, self.cap)


def read_pipe(fd: int, capture: OutputCapture) -> bool:
    """Read what the (non-blocking) pipe holds into ``capture``; True at end of file."""
    # Read until the pipe is empty: a command that printed and exited has usually
    # closed the pipe already, and seeing that now saves a loop turn.
    for _ in range(_READS_PER_WAKE):
        try:
            chunk = os.read(fd, READ_SIZE)
        except BlockingIOError:
            break
        except OSError:
            return True
        if not chunk:
            return True
        capture.add(chunk)
    if not capture.grown and (capture.size >= GROW_PIPE_AFTER or capture.truncated):
        capture.grown = True
        # Over the user's pipe budget (EPERM) the pipe stays as it was.
        with contextlib.suppress(OSError):
            fcntl.fcntl(fd, fcntl.F_SETPIPE_SZ, GROWN_PIPE)
    return False
