"""Watching a stream run: one progress line per result, live output as lines.

:class:`StreamWatch` is an ordinary plugin object (pass it with ``hooks=``). It writes
through ``emit(line)``: the Airflow trigger hands it its task log, ``remsvc run
--follow`` a terminal. Progress lines work with any server (they come from results);
output lines only with live output (``output/1``, the reference server), each
prefixed with its tid (and host, when several are watched), cut at ``output_limit``
bytes per stream so a chatty command cannot flood a log.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

from remsvc_core.hookspecs import StreamInfo, hookimpl
from remsvc_core.output import OutputChunk
from remsvc_core.results import CommandResult

__all__ = ["DEFAULT_OUTPUT_LIMIT", "StreamWatch", "command_start"]

#: Bytes of live output logged per stream by default (the rest is in the result).
DEFAULT_OUTPUT_LIMIT = 1024 * 1024
_CMD_CHARS = 60
_LINE_CHARS = 4096
_ERR_CHARS = 120


def command_start(cmd: str, limit: int = _CMD_CHARS) -> str:
    """The start of a command line, on one line, for a log."""
    flat = " ".join(cmd.split())
    return flat if len(flat) <= limit else flat[: limit - 3] + "..."


def _printable(text: str) -> str:
    # Output reaches terminals and log viewers: no escape sequences get through.
    return "".join(c if c.isprintable() or c == "\t" else "\ufffd" for c in text)


def _size(result: CommandResult) -> int:
    return len(result.out.encode()) + len(result.err.encode())


class StreamWatch:
    """Writes a line per result and the live output of running commands."""

    def __init__(
        self,
        emit: Callable[[str], None],
        *,
        output_limit: int = DEFAULT_OUTPUT_LIMIT,
        host: str = "",
        progress: bool = True,
    ) -> None:
        self.emit = emit
        self.output_limit = output_limit
        self.prefix = f"{host} " if host else ""
        self.progress = progress
        self._partial: dict[tuple[int, str], str] = {}
        self._logged: dict[tuple[int, str], int] = {}
        self._done = 0
        self._total = 0

    @hookimpl
    def remsvc_stream_started(self, stream: StreamInfo) -> None:
        self._total = len(stream.commands)

    @hookimpl
    def remsvc_output(self, chunk: OutputChunk) -> None:
        key = (chunk.tid, chunk.stream)
        logged = self._logged.get(key, 0)
        if logged >= self.output_limit:
            return
        room = self.output_limit - logged
        data = chunk.data[:room]
        self._logged[key] = logged + len(data)
        text = self._partial.pop(key, "") + data.decode("utf-8", "replace")
        *lines, rest = text.split("\n")
        for line in lines:
            self._line(chunk.tid, chunk.stream, line)
        if len(rest) > _LINE_CHARS:  # a very long line without a newline: show it now
            self._line(chunk.tid, chunk.stream, rest)
            rest = ""
        if rest:
            self._partial[key] = rest
        if len(chunk.data) > room:
            self._end_of(key)
            self.emit(
                f"{self.prefix}[tid {chunk.tid}] {chunk.stream}: more than {self.output_limit} "
                "bytes; the rest is not logged (it is in the result)"
            )

    @hookimpl
    def remsvc_result(self, result: CommandResult) -> None:
        for stream in ("stdout", "stderr"):
            self._end_of((result.tid, stream))
        self._done += 1
        if not self.progress:
            return
        seconds = f"{result.latency_s:.2f}s" if not result.replayed else "replayed"
        counted = f" ({self._done}/{self._total})" if self._total else ""
        why = ""
        if result.rc != 0 and result.err.strip():
            first = _printable(result.err.strip().splitlines()[0])
            why = f" [stderr: {first[:_ERR_CHARS]}]"
        if result.interrupted:
            why += " [interrupted: it may have run, it is not run again]"
        self.emit(
            f"{self.prefix}tid {result.tid} rc={result.rc} {seconds}, {_size(result)} bytes of "
            f"output{counted}: {command_start(result.cmd)}{why}"
        )

    @hookimpl
    def remsvc_heartbeat(self, running: Mapping[int, float]) -> None:
        for tid, seconds in running.items():
            self.emit(f"{self.prefix}tid {tid} still running after {seconds:.0f}s")

    def _end_of(self, key: tuple[int, str]) -> None:
        rest = self._partial.pop(key, "")
        if rest:
            self._line(key[0], key[1], rest)

    def _line(self, tid: int, stream: str, line: str) -> None:
        marker = "" if stream == "stdout" else " (stderr)"
        self.emit(f"{self.prefix}[tid {tid}]{marker} {_printable(line[:_LINE_CHARS])}")
