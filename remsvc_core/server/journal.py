"""The durable batches' journal: what each keyed batch ran and how it ended, on disk.

One JSON Lines file per batch under ``[batches] state_dir``, named by a hash of the
identity and the key (neither is readable from the name), mode 0600 in a 0700
directory. Records are appended and flushed to disk (``fsync``) as they happen:

- ``{"r": "batch", "identity", "key", "created"}`` first;
- ``{"r": "start", "tid", "fp", "at"}`` *before* a command is started, so that after
  a crash a command that may have run is never run again;
- ``{"r": "result", "tid", "rc", "out", "err", "hsh", "started", "ended", ...}`` when
  it ended;
- ``{"r": "state", "state"}`` when the batch was cancelled or abandoned.

Each command's output is kept next to the journal, in ``<name>.spool/<tid>.1`` (stdout)
and ``.2`` (stderr), as raw bytes up to the cap, so a re-attached client gets it
again (as a classic result, or as live-output chunks) without it being held in memory.

Reading tolerates a last line cut short by a crash. Journals expire ``expire_s``
after their last record, and together never exceed ``max_bytes``: the oldest go
first, and when that is not enough, :meth:`Journal.open` refuses (the caller then
serves the stream without durability rather than journal it partly).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["BatchJournal", "Journal", "JournalFull", "Record"]

log = logging.getLogger("remsvc.server")

_SUFFIX = ".jsonl"


class JournalFull(Exception):
    """The journals are at ``max_bytes`` even after dropping expired and old ones."""


@dataclass
class Record:
    """What the journal knows of one tid."""

    tid: int
    fingerprint: str
    started_ms: int = 0
    result: dict[str, Any] | None = None  # the result record, once it ended


@dataclass
class BatchJournal:
    """One batch's journal file and what it holds."""

    path: Path
    identity: str
    key: str
    records: dict[int, Record] = field(default_factory=dict)
    state: str = "open"
    size: int = 0
    _handle: Any = None

    @property
    def spool_dir(self) -> Path:
        return self.path.with_suffix(".spool")

    def spool_path(self, tid: int, fd: int) -> Path:
        """Where command ``tid``'s stdout (fd 1) or stderr (fd 2) bytes are kept."""
        return self.spool_dir / f"{tid}.{fd}"

    def open_spool(self, tid: int, fd: int) -> Any:
        """A binary file to append the command's output to (created 0600)."""
        self.spool_dir.mkdir(mode=0o700, exist_ok=True)
        descriptor = os.open(self.spool_path(tid, fd), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        return os.fdopen(descriptor, "wb")

    def start(self, tid: int, fingerprint: str, started_ms: int) -> None:
        """Write-ahead: the command is about to start."""
        self.records[tid] = Record(tid, fingerprint, started_ms)
        self._append({"r": "start", "tid": tid, "fp": fingerprint, "at": started_ms})

    def finish(self, tid: int, result: dict[str, Any]) -> None:
        """The command ended with ``result`` (JSON-safe; ``tid`` is added)."""
        record = self.records.get(tid)
        if record is None:  # pragma: no cover - every result follows its start
            record = self.records[tid] = Record(tid, "")
        record.result = {**result, "tid": tid}
        self._append({"r": "result", **record.result})

    def set_state(self, state: str) -> None:
        self.state = state
        self._append({"r": "state", "state": state})

    def close(self) -> None:
        if self._handle is not None:
            self._handle.close()
            self._handle = None

    def _append(self, record: dict[str, Any]) -> None:
        line = (json.dumps(record, separators=(",", ":"), ensure_ascii=False) + "\n").encode()
        if self._handle is None:
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
            self._handle = os.fdopen(fd, "ab")
        self._handle.write(line)
        self._handle.flush()
        os.fsync(self._handle.fileno())
        self.size += len(line)


class Journal:
    """All batches' journals in one directory."""

    def __init__(self, directory: str | os.PathLike[str], *, max_bytes: int, expire_s: float):
        self.directory = Path(directory)
        self.max_bytes = max_bytes
        self.expire_s = expire_s
        self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        os.chmod(self.directory, 0o700)

    def path_for(self, identity: str, key: str) -> Path:
        digest = hashlib.sha256(f"{identity}\0{key}".encode()).hexdigest()
        return self.directory / f"{digest}{_SUFFIX}"

    def open(self, identity: str, key: str, *, reserve: int = 0) -> BatchJournal:
        """The batch's journal, read back if it exists, else a new one.

        ``reserve`` is how many bytes the caller expects to add; raises
        :class:`JournalFull` when they do not fit even after :meth:`sweep`.
        """
        path = self.path_for(identity, key)
        if path.exists():
            journal = self._read(path)
            if journal is not None and journal.identity == identity and journal.key == key:
                return journal
            log.warning("journal %s is unreadable or not this batch's; starting it anew", path)
            path.unlink(missing_ok=True)
        self.sweep(keep=path)
        if self.total_bytes() + reserve > self.max_bytes:
            raise JournalFull(
                f"batch journals use {self.total_bytes()} of {self.max_bytes} bytes "
                "([batches] max_bytes)"
            )
        journal = BatchJournal(path=path, identity=identity, key=key)
        journal._append({"r": "batch", "identity": identity, "key": key, "created": _now_ms()})
        return journal

    def total_bytes(self) -> int:
        return sum(size for _, size, _ in self._files())

    def delete(self, journal: BatchJournal) -> None:
        journal.close()
        _remove(journal.path)

    def sweep(self, *, keep: Path | None = None, now: float | None = None) -> int:
        """Delete expired journals, then the oldest until under ``max_bytes``; returns
        how many were deleted. ``keep`` is never deleted (the one being opened)."""
        now = time.time() if now is None else now
        files = sorted(self._files(), key=lambda item: item[2])  # oldest first
        deleted = 0
        total = sum(size for _, size, _ in files)
        for path, size, modified in files:
            if path == keep:
                continue
            if now - modified > self.expire_s or total > self.max_bytes:
                _remove(path)
                total -= size
                deleted += 1
        return deleted

    def _files(self) -> Iterator[tuple[Path, int, float]]:
        """Each journal with the bytes it and its kept output take, and its age."""
        for path in self.directory.glob(f"*{_SUFFIX}"):
            with contextlib.suppress(FileNotFoundError):
                stat = path.stat()
                spooled = sum(
                    entry.stat().st_size
                    for entry in path.with_suffix(".spool").glob("*")
                    if entry.is_file()
                )
                yield path, stat.st_size + spooled, stat.st_mtime

    def _read(self, path: Path) -> BatchJournal | None:
        try:
            raw = path.read_bytes()
        except OSError:
            return None
        journal: BatchJournal | None = None
        for line in raw.splitlines():
            try:
                record = json.loads(line)
            except ValueError:
                continue  # a line cut short by a crash: everything before it stands
            kind = record.get("r")
            if kind == "batch":
                journal = BatchJournal(path, str(record["identity"]), str(record["key"]))
            elif journal is None:
                return None
            elif kind == "start":
                tid = int(record["tid"])
                journal.records[tid] = Record(tid, str(record["fp"]), int(record["at"]))
            elif kind == "result":
                tid = int(record["tid"])
                entry = journal.records.setdefault(tid, Record(tid, ""))
                entry.result = {k: v for k, v in record.items() if k != "r"}
            elif kind == "state":
                journal.state = str(record["state"])
        if journal is not None:
            journal.size = len(raw)
        return journal


def _remove(path: Path) -> None:
    """A journal and its kept output."""
    with contextlib.suppress(FileNotFoundError):
        path.unlink()
    spool = path.with_suffix(".spool")
    if spool.is_dir():
        for entry in spool.iterdir():
            with contextlib.suppress(FileNotFoundError):
                entry.unlink()
        with contextlib.suppress(OSError):
            spool.rmdir()


def _now_ms() -> int:
    return time.time_ns() // 1_000_000
