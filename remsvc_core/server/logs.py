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
the process, its log file, and the audit log). Handlers of a process that embeds the
server (pytest's ``caplog``, Airflow's task log) still see every record at once, on
the calling thread.

A log that cannot be written (a full disk, a removed mount) must not take the server
with it: the server's handlers (:class:`ServerFileHandler`, :class:`ServerStreamHandler`)
say so once on stderr, drop lines while it lasts, say when writing works again, and
close without raising. The file ones reopen their file on request (SIGHUP), for log
rotation without a restart.
"""

from __future__ import annotations

import collections
import logging
import os
import sys
import threading
import time
from typing import Any, TextIO

from remsvc_core.errors import ServerConfigError

__all__ = [
    "LOG_FORMAT",
    "BackgroundLog",
    "FileLog",
    "LineFormatter",
    "ServerFileHandler",
    "ServerStreamHandler",
]

LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


class LineFormatter(logging.Formatter):
    """:data:`LOG_FORMAT`, with the time stamp's date and time formatted once a second
    rather than once a line (``time.strftime`` was a large part of a line's cost)."""

    def __init__(self) -> None:
        super().__init__(LOG_FORMAT)
        self._second = -1
        self._stamp = ""

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:
        second = int(record.created)
        if second != self._second:
            self._second = second
            self._stamp = time.strftime("%Y-%m-%d %H:%M:%S", self.converter(second))
        return f"{self._stamp},{int(record.msecs):03d}"


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
        if not pending:
            return
        records = []
        while pending:
            records.append(pending.popleft())
        for target in targets:
            wanted = [r for r in records if r.levelno >= target.level and target.filter(r)]
            if wanted:
                _write_batch(target, wanted)

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


def _write_batch(target: logging.Handler, records: list[logging.LogRecord]) -> None:
    """Hand ``records`` to ``target``: a stream handler gets them as one write and one
    flush (a write and a flush per line cost more than the lines themselves)."""
    stream = getattr(target, "stream", None)
    if not isinstance(target, logging.StreamHandler) or stream is None:
        for record in records:
            target.handle(record)
        return
    try:
        text = "".join(target.format(record) + target.terminator for record in records)
    except Exception:  # a bad record (an argument that does not format): one at a time
        for record in records:
            target.handle(record)
        return
    with target.lock:  # type: ignore[union-attr]
        try:
            stream.write(text)
            target.flush()
        except Exception:
            target.handleError(records[-1])
            return
    recovered = getattr(target, "recovered", None)
    if callable(recovered):
        recovered()


class _FailuresReportedOnce(logging.Handler):
    """Mixin: a failed write is reported once on stderr, not as a traceback per line."""

    where = "the log"
    _failing = False
    _failed_now = False

    def handleError(self, record: logging.LogRecord | None) -> None:
        self._failed_now = True
        if self._failing:
            return
        self._failing = True
        _warn(f"cannot write {self.where}: {sys.exc_info()[1]}; its lines are dropped until it can")

    def emit(self, record: logging.LogRecord) -> None:
        self._failed_now = False
        try:
            super().emit(record)
        except OSError:  # FileHandler opens a file it had to close outside its try
            self.handleError(record)
        if self._failing and not self._failed_now:
            self._failing = False
            _warn(f"writing {self.where} again")

    def recovered(self) -> None:
        """A batch of lines was written: say so if writing had been failing."""
        if self._failing:
            self._failing = False
            _warn(f"writing {self.where} again")

    def close(self) -> None:
        try:
            super().close()
        except (OSError, ValueError) as exc:  # flushing the last lines failed
            if not self._failing:
                _warn(f"cannot write the last lines of {self.where}: {exc}")


def _warn(message: str) -> None:
    # Straight to the process's stderr: the logging machinery is what is failing.
    try:
        sys.__stderr__.write(f"remsvc-server: warning: {message}\n")  # type: ignore[union-attr]
        sys.__stderr__.flush()  # type: ignore[union-attr]
    except (OSError, ValueError, AttributeError):
        pass  # stderr itself is what cannot be written


class ServerStreamHandler(_FailuresReportedOnce, logging.StreamHandler):  # type: ignore[type-arg]
    """The server's stderr log."""

    def __init__(self, stream: TextIO) -> None:
        super().__init__(stream)
        self.where = "the log to stderr"


class ServerFileHandler(_FailuresReportedOnce, logging.FileHandler):
    """An appended file (``[log] file``, the audit log) that can be reopened after rotation.

    ``mode`` is the permission bits a new file is created with.
    """

    def __init__(self, path: str, *, mode: int = 0o644) -> None:
        self._create_mode = mode
        super().__init__(path, encoding="utf-8")
        self.where = path

    def _open(self) -> Any:
        descriptor = os.open(
            self.baseFilename,
            os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC,
            self._create_mode,
        )
        return open(descriptor, "a", encoding="utf-8")

    def reopen(self) -> None:
        """Close the file and open its path again (after ``mv``: a new file there)."""
        with self.lock:  # type: ignore[union-attr]
            old, self.stream = self.stream, None  # type: ignore[assignment]
            if old is not None:
                try:
                    old.close()
                except OSError as exc:
                    self.where = self.baseFilename
                    _warn(f"cannot write the last lines of {self.baseFilename}: {exc}")
            try:
                self.stream = self._open()
            except OSError as exc:
                # Opened again on the next line (FileHandler does, with stream None).
                _warn(f"cannot reopen {self.baseFilename}: {exc}")


class FileLog:
    """``[log] file``: the lines of ``logger`` appended to ``path``, off the event loop.

    When the server owns the process, the file is one more target of the process's
    BackgroundLog (``shared``: one copy of each record, one thread); otherwise it
    gets its own. Either way it receives the lines of ``logger`` only.
    """

    def __init__(
        self, path: str, source: str, logger: logging.Logger, shared: BackgroundLog | None
    ) -> None:
        try:
            self.handler = ServerFileHandler(path)
        except OSError as exc:
            raise ServerConfigError(f"{source}: [log] file: cannot open {path!r}: {exc}") from None
        self.handler.setFormatter(LineFormatter())
        self._logger = logger
        self._shared = shared
        self._own: BackgroundLog | None = None
        if shared is not None:
            self.handler.addFilter(logging.Filter(logger.name))
            shared.add_target(self.handler)
        else:
            self._own = BackgroundLog(self.handler)
            logger.addHandler(self._own.handler)

    def reopen(self) -> None:
        """Open the file's path again (after it was rotated away)."""
        self.handler.reopen()

    def close(self) -> None:
        """Write out every pending line, then close the file."""
        if self._own is not None:
            self._logger.removeHandler(self._own.handler)
            self._own.close()
        elif self._shared is not None:
            self._shared.remove_target(self.handler)
            self.handler.close()


def server_stderr_log() -> BackgroundLog:
    """The log to stderr of a process that is only the server (``serve()``)."""
    handler = ServerStreamHandler(sys.stderr)
    handler.setFormatter(LineFormatter())
    # The process is the server's: its records need no thread or process names, and
    # not looking them up is a tenth of what a record costs.
    logging.logThreads = False
    logging.logProcesses = False
    logging.logMultiprocessing = False
    return BackgroundLog(handler)
