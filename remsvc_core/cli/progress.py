"""A live progress bar on stderr, driven by the per-tid ``remsvc_result`` hook.

It is an ordinary pluggy plugin object, passed to the engine with ``hooks=`` for one
stream: the same way any plugin author would watch results arrive.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping
from typing import Any, TextIO

from remsvc_core.cli.output import terminal_width
from remsvc_core.hookspecs import hookimpl
from remsvc_core.results import CommandResult, StreamOutcome

_ERASE_LINE = "\r\x1b[K"


class ProgressBar:
    """Draws ``[####----] 5/12 done, 1 failed, 0:03`` on one terminal line.

    Redraws at most every ``min_interval`` seconds (the last result always draws), so a
    batch of thousands of fast commands does not flood the terminal.
    """

    def __init__(
        self,
        total: int,
        stream: TextIO,
        *,
        is_success: Callable[[Mapping[str, Any]], bool] = lambda result: result["rc"] == 0,
        min_interval: float = 0.1,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.total = total
        self.stream = stream
        self.is_success = is_success
        self.min_interval = min_interval
        self.clock = clock
        self.done: set[int] = set()
        self.failed: set[int] = set()
        self._started = clock()
        self._last_draw = float("-inf")
        self._lock = threading.Lock()

    @hookimpl
    def remsvc_result(self, result: CommandResult) -> None:
        with self._lock:
            # A retried stream can answer a tid again; count each tid once.
            self.done.add(result.tid)
            if self.is_success(result.as_dict()):
                self.failed.discard(result.tid)
            else:
                self.failed.add(result.tid)
            now = self.clock()
            if len(self.done) >= self.total or now - self._last_draw >= self.min_interval:
                self._last_draw = now
                self._write(_ERASE_LINE + self.line())

    @hookimpl
    def remsvc_stream_finished(self, outcome: StreamOutcome) -> None:
        # Leave no bar behind: the summary and the table take over the terminal.
        with self._lock:
            self._write(_ERASE_LINE)

    def line(self) -> str:
        """The bar's text, without cursor control."""
        done, total = len(self.done), max(self.total, 1)
        elapsed = int(self.clock() - self._started)
        clock = f"{elapsed // 60}:{elapsed % 60:02d}"
        counts = f" {done}/{self.total} done, {len(self.failed)} failed, {clock}"
        width = terminal_width(self.stream) or 80
        bar_width = max(10, min(40, width - len(counts) - 3))
        filled = bar_width * done // total
        return f"[{'#' * filled}{'-' * (bar_width - filled)}]{counts}"

    def _write(self, text: str) -> None:
        try:
            self.stream.write(text)
            self.stream.flush()
        except (OSError, ValueError):
            pass  # a closed or broken terminal must not fail the run
