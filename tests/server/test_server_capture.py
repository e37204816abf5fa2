"""Output capture on its own: the cap, the truncation marker, UTF-8, reading a real pipe."""

from __future__ import annotations

import contextlib
import fcntl
import os

from remsvc_core.server.capture import (
    GROW_PIPE_AFTER,
    GROWN_PIPE,
    OutputCapture,
    read_pipe,
    truncation_marker,
)


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


def test_a_pipe_that_carries_a_lot_is_grown_and_read_whole() -> None:
    """A fast writer wakes the server every 64 KiB of a default pipe: once a command
    has printed GROW_PIPE_AFTER bytes its pipe is grown, and each wake-up reads it all."""
    read_end, write_end = os.pipe()
    os.set_blocking(read_end, False)
    capture = OutputCapture(cap=64 << 20)
    payload = bytes(range(256)) * 1024  # 256 KiB per write
    try:
        os.set_blocking(write_end, False)
        written = 0
        for _ in range(1000):  # bounded: each turn moves at least a pipe's worth
            if written >= GROW_PIPE_AFTER + len(payload):
                break
            # Fill what the pipe holds, then drain it as the event loop would.
            with contextlib.suppress(BlockingIOError):
                written += os.write(write_end, payload)
            read_pipe(read_end, capture)
        assert capture.grown
        assert fcntl.fcntl(read_end, fcntl.F_GETPIPE_SZ) == GROWN_PIPE
        os.write(write_end, payload)  # a whole grown pipe's worth...
        os.close(write_end)
        write_end = -1
        assert read_pipe(read_end, capture)  # ...and its end of file, in one call
        assert capture.size == written + len(payload)
        assert bytes(capture.data[:512]) == payload[:512]
    finally:
        os.close(read_end)
        if write_end >= 0:
            os.close(write_end)
