"""Batch validation: every malformed batch is refused before anything is sent."""

from __future__ import annotations

from typing import Any

import pytest

from remsvc_core.commands import Command, validate_commands
from remsvc_core.errors import CommandValidationError


def test_assigns_one_based_tids_and_crc32_hashes() -> None:
    batch = validate_commands([{"cmd": "123456789"}, {"cmd": "hostname", "cmdtyp": 1}])
    assert [c.tid for c in batch] == [1, 2]
    assert batch[0].hsh == "cbf43926"
    assert batch[1].cmdtyp == 1


def test_bare_strings_are_shorthand_and_default_src_fills_gaps() -> None:
    batch = validate_commands(["uptime", {"cmd": "df", "src": "mine"}], default_src="dag.task")
    assert batch == [
        Command(tid=1, cmd="uptime", src="dag.task"),
        Command(tid=2, cmd="df", src="mine"),
    ]


@pytest.mark.parametrize(
    ("batch", "message"),
    [
        ([], "commands is empty"),
        ("echo hi", "must be a list"),
        (None, "must be a list"),
        ([{"cmd": "ok"}, {"cmd": "   "}], r"commands\[1\]\.cmd is blank"),
        ([{"cmd": 5}], r"commands\[0\]\.cmd must be a string, got int"),
        ([{"cmdtyp": 0}], r"commands\[0\] has no 'cmd'"),
        ([{"cmd": "x", "cmdtyp": 2}], r"commands\[0\]\.cmdtyp must be 0 \(shell\) or 1"),
        ([{"cmd": "x", "cmdtyp": True}], r"cmdtyp must be 0"),
        ([{"cmd": "x", "cmdtyp": "0"}], r"cmdtyp must be 0"),
        ([{"cmd": "x", "user": "root"}], r"unknown field\(s\) 'user'; allowed fields are"),
        ([{"cmd": "x", "tid": 3}], r"tid and hsh are assigned for you"),
        ([{"cmd": "x", "cmdusr": 0}], r"commands\[0\]\.cmdusr must be a string"),
        ([42], r"commands\[0\] must be a dict"),
    ],
)
def test_bad_batches_name_index_and_field(batch: Any, message: str) -> None:
    with pytest.raises(CommandValidationError, match=message):
        validate_commands(batch)


def test_unicode_and_long_commands_are_accepted() -> None:
    long_cmd = "echo " + "x" * 100_000
    batch = validate_commands([{"cmd": "echo héllo ✓"}, {"cmd": long_cmd}])
    assert batch[0].hsh == "%08x" % (__import__("zlib").crc32("echo héllo ✓".encode()) & 0xFFFFFFFF)
    assert batch[1].cmd == long_cmd
