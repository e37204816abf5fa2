"""Output capture on its own: the cap, the truncation marker, UTF-8, reading a real pipe."""

from __future__ import annotations

import os

from remsvc_core.server.capture import OutputCapture, read_pipe, truncation_marker


def test_output_under_and_at_the_cap_is_kept_whole():
    capture = OutputCapture(5)
    capture.add(b"ab")
    capture.add(b"cde")
    assert (bytes(capture.data), capture.truncated) == (b"abcde", False)
    assert capture.text() == "abcde"


def test_output_past_the_cap_is_cut_and_marked_and_the_rest_thrown_away():
    capture = OutputCapture(5)
    capture.add(b"abcd")
    capture.add(b"efgh")
    capture.add(b"more that is never kept")
    assert bytes(capture.data) == b"abcde"
    assert capture.truncated
    assert capture.text() == "abcde" + truncation_marker(5)


def test_one_byte_past_the_cap_is_enough_to_mark_it():
    capture = OutputCapture(3)
    capture.add(b"abc")
    capture.add(b"d")
    assert capture.text() == "abc\n\x01[remSvc: output truncated at 3 bytes]\x01\n"


def test_a_character_split_by_the_cut_is_dropped_not_replaced():
    cut = OutputCapture(2)
    cut.add("aé!".encode())  # 'a', then 0xC3 fits and 0xA9 does not
    assert cut.text() == "a" + truncation_marker(2)
    whole = OutputCapture(5)
    whole.add("aa€!".encode())  # '€' is 3 bytes and ends exactly at the cap: kept
    assert whole.text() == "aa€" + truncation_marker(5)


def test_invalid_utf8_in_whole_output_becomes_replacement_characters():
    capture = OutputCapture(100)
    capture.add(b"ok \xff\xfe end")
    assert capture.text() == "ok \ufffd\ufffd end"


def test_read_pipe_takes_what_is_there_and_reports_end_of_file():
    read_end, write_end = os.pipe()
    try:
        os.set_blocking(read_end, False)
        capture = OutputCapture(1 << 20)
        assert read_pipe(read_end, capture) is False  # empty, still open
        os.write(write_end, b"hello ")
        os.write(write_end, b"world")
        assert read_pipe(read_end, capture) is False  # read it all, writer still open
        assert bytes(capture.data) == b"hello world"
        os.close(write_end)
        write_end = -1
        assert read_pipe(read_end, capture) is True
        assert capture.text() == "hello world"
    finally:
        os.close(read_end)
        if write_end >= 0:
            os.close(write_end)
