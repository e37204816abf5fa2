"""The server's own log handlers, written from a background thread in small batches.

The server logs one INFO line per command, and its event loop is its only thread:
formatting that line (time stamp included), writing it and flushing it to stderr and
to ``[log] file`` cost about 50 µs a command there, in the path between one command's
end and the next one's start. :class:`BackgroundLog` leaves the loop only the cheap
part, making the record and appending it to a list. A thread wakes at most every
``interval`` seconds while records come in (not once per record: waking it per
record costs the loop about as much as the write it saves), then formats, writes
and flushes what gathered, in order. Lines therefore reach their file up to
``interval`` late; :meth:`BackgroundLog.remove_target` and
:meth:`BackgroundLog.close` write out everything still pending first, and the server
calls them when it stops.

Only handlers the server made itself go through it (its stderr handler when it owns
the process, and its log file). Handlers of a process that embeds the server (pytest's
``caplog``, Airflow's task log) still see every record at once, on the calling thread.
"""

from __future__ import annotations

import collections
import logging
import threading

__all__ = ["BackgroundLog"]

DEFAULT_INTERVAL_S = 0.05


class _Gather(logging.Handler):
    def __init__(self, owner: BackgroundLog) -> None:
        super().__init__()
        self._owner = owner

    def emit(self, record: logging.LogRecord) -> None:
        # Merge the arguments now (a mutable argument could change before the thread
        # gets to it), but leave the time stamp, the traceback text and the I/O to the
        # thread. A copy, because the same record goes on to the logger's other
        # handlers and its parents'; a shallow one made directly, which is three times
        # cheaper than copy.copy.
        try:
            prepared = logging.LogRecord.__new__(type(record))
            prepared.__dict__.update(record.__dict__)
            prepared.msg = prepared.message = record.getMessage()
            prepared.args = None
        except Exception:
            self.handleError(record)
            return
        self._owner.add(prepared)

    def handle(self, record: logging.LogRecord) -> bool:
        # No lock: emit only appends to a deque, which is thread-safe by itself.
        if not self.filter(record):
            return False
        self.emit(record)
        return True


class BackgroundLog:
    """``handler`` collects records; a thread hands them to the targets in order."""

    def __init__(self, *targets: logging.Handler, interval: float = DEFAULT_INTERVAL_S) -> None:
        self.interval = interval
        self.handler: logging.Handler = _Gather(self)
        self._targets = tuple(targets)
        self._pending: collections.deque[logging.LogRecord] = collections.deque()
        self._writing = threading.Lock()  # one writer at a time, in order
        self._arrived = threading.Event()
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._run, name="remsvc-log", daemon=True)
        self._thread.start()

    @property
    def targets(self) -> tuple[logging.Handler, ...]:
        return self._targets

    def add(self, record: logging.LogRecord) -> None:
        self._pending.append(record)
        if not self._arrived.is_set():  # only the first record of a batch wakes the thread
            self._arrived.set()

    def add_target(self, target: logging.Handler) -> None:
        """Write ``target`` every record from now on (use its filters to pick them)."""
        with self._writing:
            self._targets = (*self._targets, target)

    def remove_target(self, target: logging.Handler) -> None:
        """Write out what is pending (to ``target`` too), then stop writing to it."""
        with self._writing:
            self._write_pending()
            self._targets = tuple(t for t in self._targets if t is not target)

    def _run(self) -> None:
        while not self._stopped.is_set():
            self._arrived.wait()
            self._stopped.wait(self.interval)  # let a batch gather (cut short by close)
            self._arrived.clear()
            with self._writing:
                self._write_pending()

    def _write_pending(self) -> None:
        pending, targets = self._pending, self._targets
        while pending:
            record = pending.popleft()
            for target in targets:
                if record.levelno >= target.level:
                    target.handle(record)

    def close(self) -> None:
        """Write out every pending record, stop the thread and close the targets."""
        if self._stopped.is_set():
            return
        self._stopped.set()
        self._arrived.set()
        self._thread.join()
        with self._writing:
            self._write_pending()  # anything added while the thread was finishing
        for target in self._targets:
            target.close()
