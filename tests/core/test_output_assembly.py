"""Live output put back together: the same text as the classic result, spilled to a
file past a threshold, never doubled when chunks come again after a re-attach."""

from __future__ import annotations

import hashlib
from pathlib import Path

from remsvc_core.output import OutputAssembler, capped_text, truncation_marker


def test_chunks_make_the_classic_text() -> None:
    assembler = OutputAssembler()
    data = "héllo wörld\n".encode()
    assembler.add(1, 1, data[:2], 0)  # cut inside "é"
    assembler.add(1, 1, data[2:], 2)
    assert assembler.finish(1, 1, truncated=False, kept_bytes=len(data)).text == "héllo wörld\n"


def test_a_truncated_stream_gets_the_marker_and_loses_the_cut_character() -> None:
    kept = "ab€".encode()[:4]  # the cap (4 bytes) cut the euro sign
    assembler = OutputAssembler()
    assembler.add(7, 2, kept, 0)
    text = assembler.finish(7, 2, truncated=True, kept_bytes=4).text
    assert text == "ab" + truncation_marker(4)
    assert text == capped_text(kept, True, 4)


def test_chunks_seen_before_are_not_doubled() -> None:
    assembler = OutputAssembler()
    assert assembler.add(1, 1, b"abc", 0) is not None
    again = assembler.add(1, 1, b"abcdef", 0)  # resent from 0 after a re-attach
    assert again is not None
    assert (again.data, again.offset) == (b"def", 3)
    assert assembler.add(1, 1, b"zz", 10) is None  # a gap is never filled in
    assert assembler.finish(1, 1, truncated=False, kept_bytes=6).text == "abcdef"


def test_past_the_threshold_output_goes_to_a_file_with_its_hash(tmp_path: Path) -> None:
    assembler = OutputAssembler(spill_dir=tmp_path, spill_bytes=10)
    pieces = [b"0123456789", b"abcdefghij", b"\xff\xfe"]
    offset = 0
    for piece in pieces:
        assembler.add(3, 1, piece, offset)
        offset += len(piece)
    finished = assembler.finish(3, 1, truncated=False, kept_bytes=offset)
    whole = b"".join(pieces)
    assert finished.text == ""
    assert finished.path is not None
    assert Path(finished.path).read_bytes() == whole  # raw bytes, not decoded text
    assert finished.sha256 == hashlib.sha256(whole).hexdigest()
    assert finished.size == len(whole)
