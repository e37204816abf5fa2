"""The durable batches' journal on disk: written ahead, read back after a crash,
scoped by identity, expired and bounded in size."""

from __future__ import annotations

import os
import stat
import time
from pathlib import Path

import pytest

from remsvc_core.server.journal import Journal, JournalFull


def _journal(tmp_path: Path, **kwargs: float) -> Journal:
    options = {"max_bytes": 1_000_000, "expire_s": 3600.0, **kwargs}
    return Journal(
        tmp_path / "state", max_bytes=int(options["max_bytes"]), expire_s=options["expire_s"]
    )


def test_records_survive_a_reopen(tmp_path: Path) -> None:
    journal = _journal(tmp_path)
    batch = journal.open("ops", "nightly:1")
    batch.start(1, "fp1", 1000)
    batch.finish(
        1, {"rc": 0, "out": "one\n", "err": "", "hsh": "abc", "started": 1000, "ended": 1500}
    )
    batch.start(2, "fp2", 1600)  # running when the server "died"
    batch.close()

    again = _journal(tmp_path).open("ops", "nightly:1")
    assert again.records[1].result is not None
    assert again.records[1].result["out"] == "one\n"
    assert again.records[2].result is None  # started, never finished: maybe ran
    assert again.records[2].fingerprint == "fp2"


def test_a_line_cut_short_by_a_crash_keeps_everything_before_it(tmp_path: Path) -> None:
    journal = _journal(tmp_path)
    batch = journal.open("ops", "k")
    batch.start(1, "fp1", 1)
    batch.finish(1, {"rc": 3, "out": "", "err": "e", "hsh": "", "started": 1, "ended": 2})
    batch.close()
    with open(batch.path, "ab") as handle:
        handle.write(b'{"r":"start","tid":2,"fp":"f')  # the crash
    again = _journal(tmp_path).open("ops", "k")
    assert sorted(again.records) == [1]
    assert again.records[1].result is not None
    assert again.records[1].result["rc"] == 3


def test_identities_never_share_a_batch(tmp_path: Path) -> None:
    journal = _journal(tmp_path)
    mine = journal.open("alice", "same-key")
    mine.start(1, "fp", 1)
    mine.close()
    theirs = journal.open("bob", "same-key")
    assert theirs.records == {}
    assert theirs.path != mine.path
    assert "same-key" not in theirs.path.name
    assert "alice" not in mine.path.name


def test_files_are_private(tmp_path: Path) -> None:
    journal = _journal(tmp_path)
    batch = journal.open("ops", "k")
    batch.start(1, "fp", 1)
    assert stat.S_IMODE(os.stat(journal.directory).st_mode) == 0o700
    assert stat.S_IMODE(os.stat(batch.path).st_mode) == 0o600


def test_expired_journals_are_swept(tmp_path: Path) -> None:
    journal = _journal(tmp_path, expire_s=60)
    old = journal.open("ops", "old")
    old.close()
    past = time.time() - 3600
    os.utime(old.path, (past, past))
    journal.open("ops", "new").close()
    assert not old.path.exists()


def test_the_oldest_go_first_and_a_full_journal_refuses(tmp_path: Path) -> None:
    journal = _journal(tmp_path, max_bytes=2_000)
    first = journal.open("ops", "first")
    first.finish(1, {"out": "x" * 900})
    first.close()
    past = time.time() - 100
    os.utime(first.path, (past, past))
    second = journal.open("ops", "second")
    second.finish(1, {"out": "y" * 900})
    second.close()
    journal.open("ops", "third", reserve=500).close()  # makes room by dropping "first"
    assert not first.path.exists()
    assert second.path.exists()
    with pytest.raises(JournalFull, match="max_bytes"):
        journal.open("ops", "fourth", reserve=5_000)
