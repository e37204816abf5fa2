"""A live progress bar on stderr, driven by the per-tid ``remsvc_result`` hook.

It is an ordinary pluggy plugin object, passed to the engine with ``hooks=`` for one
stream: the same way any plugin author would watch results arrive. Between results a
ticker thread (started with the stream) redraws it, so the clock runs while a long
command runs, a result that arrived within ``min_interval`` of a redraw is shown at the
next tick, and the bar is there before the first result.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any, TextIO

from remsvc_core.cli.output import terminal_width
from remsvc_core.commands import Command
from remsvc_core.hookspecs import StreamInfo, hookimpl
from remsvc_core.results import CommandResult, StreamOutcome

_ERASE_LINE = "\r\x1b[K"
_NAME_CHARS = 40


class ProgressBar:
    """Draws ``tid 6: make test [####----] 5/12 done, 1 failed, 0:03`` on one line.

    Redraws for a result at most every ``min_interval`` seconds (the last result always
    draws), so a batch of thousands of fast commands does not flood the terminal; the
    ticker redraws every ``tick`` seconds from the stream's start to its end, with the
    current count and clock. The command named is the first one without a result.
    """

    def __init__(
        self,
        total: int,
        stream: TextIO,
        *,
        commands: Sequence[Command] = (),
        is_success: Callable[[Mapping[str, Any]], bool] = lambda result: result["rc"] == 0,
        min_interval: float = 0.1,
        tick: float = 0.5,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.total = total
        self.commands = list(commands)
        self.tick = tick
        self._stopped = threading.Event()
        self._ticker: threading.Thread | None = None
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
                self._draw()

    @hookimpl
    def remsvc_stream_started(self, stream: StreamInfo) -> None:
        with self._lock:
            if not self.commands:
                self.commands = list(stream.commands)
            self._draw()
        if self._ticker is None and self.tick > 0:
            self._ticker = threading.Thread(target=self._tick, name="remsvc-progress", daemon=True)
            self._ticker.start()

    @hookimpl
    def remsvc_stream_finished(self, outcome: StreamOutcome) -> None:
        # Leave no bar behind: the summary and the table take over the terminal.
        self._stopped.set()
        with self._lock:
            self._write(_ERASE_LINE)

    def stop(self) -> None:
        """Stop the ticker (a stream that never finished, on Ctrl-C)."""
        self._stopped.set()

    def _tick(self) -> None:
        while not self._stopped.wait(self.tick):
            with self._lock:
                if not self._stopped.is_set():
                    self._draw()

    def _draw(self) -> None:
        self._last_draw = self.clock()
        self._write(_ERASE_LINE + self.line())

    def running(self) -> str:
        """``tid N: <command>`` for the first command without a result, or ""."""
        for command in self.commands:
            if command.tid not in self.done:
                text = " ".join(command.cmd.split())
                if len(text) > _NAME_CHARS:
                    text = text[: _NAME_CHARS - 3] + "..."
                return f"tid {command.tid}: {text} "
        return ""

    def line(self) -> str:
        """The bar's text, without cursor control."""
        done, total = len(self.done), max(self.total, 1)
        elapsed = int(self.clock() - self._started)
        clock = f"{elapsed // 60}:{elapsed % 60:02d}"
        counts = f" {done}/{self.total} done, {len(self.failed)} failed, {clock}"
        width = terminal_width(self.stream) or 80
        running = self.running()
        # The bar gives way to the command's name, down to 10 columns; then the name is cut.
        bar_width = max(10, min(40, width - len(counts) - len(running) - 3))
        filled = bar_width * done // total
        bar = f"[{'#' * filled}{'-' * (bar_width - filled)}]{counts}"
        room = width - len(bar) - 1
        return (running[:room] if room > 12 else "") + bar

    def _write(self, text: str) -> None:
        try:
            self.stream.write(text)
            self.stream.flush()
        except (OSError, ValueError):
            pass  # a closed or broken terminal must not fail the run
