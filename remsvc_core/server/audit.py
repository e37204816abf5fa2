"""The audit log: one JSON Lines record per command, for an operator's SIEM.

``[audit] file`` turns it on. Every command the server is asked to run leaves one
record: run to its end (``"event": "command"``), refused before it started
(``"refused"``), or killed because its caller went away (``"cancelled"``). The fields
are listed in :data:`FIELDS` and documented one by one in docs/server-operators.md
("The audit log"); every record has every field, ``null`` where it does not apply.

Like the server's log, records are written by a background thread (see
:mod:`remsvc_core.server.logs`): the event loop only gathers the values (a tuple and
an append), the thread hashes the command, encodes the JSON and writes it. The file
is created mode 0600 (it holds commands), appended to, and reopened on SIGHUP, so it
can be rotated by renaming it without a restart.
"""

from __future__ import annotations

import datetime
import hashlib
import json
import logging
import time
from typing import Any

from remsvc_core.errors import ServerConfigError
from remsvc_core.server.logs import BackgroundLog, ServerFileHandler
from remsvc_core.server.outcome import ExecResult

__all__ = ["FIELDS", "AuditLog"]

# Every record's keys, in the order they are written.
FIELDS = (
    "time",
    "event",
    "identity",
    "peer",
    "src",
    "tid",
    "cmd_sha256",
    "cmd",
    "cmdtyp",
    "cmdusr",
    "decision",
    "rule",
    "status",
    "rc",
    "signal",
    "timed_out",
    "duration_ms",
    "out_bytes",
    "err_bytes",
)


class _Entry(logging.LogRecord):
    """What the loop hands the thread: a bare record carrying the values (see _JsonLine)."""

    values: tuple[Any, ...]


class _JsonLine(logging.Formatter):
    def __init__(self, include_command: bool) -> None:
        super().__init__()
        self.include_command = include_command

    def format(self, record: logging.LogRecord) -> str:
        created, event, identity, peer, request, rule, status, result, duration_s = record.values  # type: ignore[attr-defined]
        cmd = request.cmd
        ended = datetime.datetime.fromtimestamp(created, datetime.timezone.utc)
        values: dict[str, Any] = {
            "time": ended.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            "event": event,
            "identity": identity,
            "peer": peer,
            "src": request.src,
            "tid": request.tid,
            "cmd_sha256": hashlib.sha256(cmd.encode("utf-8", "surrogatepass")).hexdigest(),
            "cmd": cmd if self.include_command else None,
            "cmdtyp": request.cmdtyp,
            "cmdusr": request.cmdusr,
            "decision": "refused" if event == "refused" else "allowed",
            "rule": rule,
            "status": status,
            "rc": None,
            "signal": None,
            "timed_out": False,
            "duration_ms": None if duration_s is None else round(duration_s * 1000),
            "out_bytes": None,
            "err_bytes": None,
        }
        if result is not None:
            values.update(
                rc=result.rc,
                signal=result.signal,
                timed_out=result.timed_out,
                out_bytes=len(result.out.encode("utf-8", "surrogatepass")),
                err_bytes=len(result.err.encode("utf-8", "surrogatepass")),
            )
        # ensure_ascii: control characters and all are escaped; one line per record.
        return json.dumps(values, ensure_ascii=True, separators=(",", ":"))


class AuditLog:
    """Writes the records to ``path`` (created 0600), off the event loop.

    ``AuditLog(None)`` is the audit log of a server without ``[audit] file``: every
    call returns at once.
    """

    def __init__(self, path: str | None, *, include_command: bool = True, source: str = "") -> None:
        self._handler: ServerFileHandler | None = None
        self._background: BackgroundLog | None = None
        if path is None:
            return
        try:
            self._handler = ServerFileHandler(path, mode=0o600)
        except OSError as exc:
            problem = f"cannot open {path!r}: {exc}"
            raise ServerConfigError(f"{source}: [audit] file: {problem}") from None
        self._handler.setFormatter(_JsonLine(include_command))
        self._background = BackgroundLog(self._handler)

    def _add(self, *values: Any) -> None:
        if self._background is None:
            return
        entry = _Entry.__new__(_Entry)
        entry.levelno = logging.CRITICAL  # passes every handler level
        entry.values = (time.time(), *values)
        self._background.add(entry)

    def command(
        self,
        request: Any,
        identity: str,
        peer: str,
        rule: str,
        result: ExecResult,
        duration_s: float,
    ) -> None:
        """A command that ran to its end (or to its timeout); ``rule`` let it run."""
        self._add("command", identity, peer, request, rule, None, result, duration_s)

    def refused(self, request: Any, identity: str, peer: str, status: str, reason: str) -> None:
        """A command refused before it started: ``status`` (the gRPC code) and why."""
        self._add("refused", identity, peer, request, reason, status, None, None)

    def cancelled(
        self, request: Any, identity: str, peer: str, rule: str, duration_s: float
    ) -> None:
        """A running command killed because its call ended (the caller went away)."""
        self._add("cancelled", identity, peer, request, rule, None, None, duration_s)

    def reopen(self) -> None:
        """Open the file's path again after rotation (call it off the event loop)."""
        if self._handler is not None:
            self._handler.reopen()

    def close(self) -> None:
        """Write out every pending record and close the file."""
        if self._background is not None:
            self._background.close()
            self._background = None
