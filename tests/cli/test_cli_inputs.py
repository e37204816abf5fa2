"""Reading commands for ``remsvc run``: arguments, line files, JSON, defaults."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest

from remsvc_core.cli.exit_codes import UsageError
from remsvc_core.cli.inputs import load_commands, parse_cmdtyp, parse_command_text
from remsvc_core.commands import POWERSHELL, SHELL


def test_arguments_become_commands_in_order_with_tids() -> None:
    commands = load_commands(["echo a", "echo b", "uname -a"], None, src="cli")
    assert [(c.tid, c.cmd, c.src) for c in commands] == [
        (1, "echo a", "cli"),
        (2, "echo b", "cli"),
        (3, "uname -a", "cli"),
    ]


def test_line_file_skips_blank_and_comment_lines(tmp_path: Path) -> None:
    path = tmp_path / "cmds.txt"
    path.write_text("# header\necho one\n\n   \necho two  \n#echo skipped\n", encoding="utf-8")
    commands = load_commands([], str(path))
    assert [c.cmd for c in commands] == ["echo one", "echo two"]


def test_json_list_of_strings_and_dicts(tmp_path: Path) -> None:
    path = tmp_path / "cmds.json"
    path.write_text(
        json.dumps(["echo plain", {"cmd": "Get-Date", "cmdtyp": 1, "src": "own"}, {"cmd": "id"}]),
        encoding="utf-8",
    )
    commands = load_commands([], str(path), cmdtyp=SHELL, user="svc", src="default")
    assert [(c.cmd, c.cmdtyp, c.cmdusr, c.src) for c in commands] == [
        ("echo plain", SHELL, "svc", "default"),
        ("Get-Date", POWERSHELL, "svc", "own"),  # its own src and cmdtyp win
        ("id", SHELL, "svc", "default"),
    ]


def test_defaults_apply_to_plain_lines() -> None:
    commands = parse_command_text("Get-Process\n", "x")
    assert commands == ["Get-Process"]
    loaded = load_commands(["Get-Process"], None, cmdtyp=POWERSHELL)
    assert loaded[0].cmdtyp == POWERSHELL


def test_stdin_is_read_for_dash(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("sys.stdin", io.StringIO('["echo from stdin"]'))
    assert [c.cmd for c in load_commands([], "-")] == ["echo from stdin"]


@pytest.mark.parametrize(
    ("arguments", "file_text", "fragment"),
    [
        ([], None, "no commands given"),
        (["echo x"], "echo y\n", "not both"),
        ([], '["echo", ', "not valid JSON"),
        ([], "# only a comment\n\n", "holds no commands"),
        ([], '[{"cmd": "echo", "tid": 5}]', "unknown field(s) 'tid'"),
        ([], '[{"cmdtyp": 0}]', "has no 'cmd'"),
        ([], "[42]", "must be a dict"),
    ],
)
def test_bad_input_names_the_problem(
    tmp_path: Path, arguments: list[str], file_text: str | None, fragment: str
) -> None:
    file = None
    if file_text is not None:
        path = tmp_path / "cmds"
        path.write_text(file_text, encoding="utf-8")
        file = str(path)
    with pytest.raises(UsageError) as info:
        load_commands(arguments, file)
    assert fragment in str(info.value)


def test_a_json_object_is_one_command_line_not_json() -> None:
    # Only a leading '[' switches to JSON; anything else is one command per line.
    assert parse_command_text('{"cmd": "echo"}\n', "x") == ['{"cmd": "echo"}']


def test_missing_file_is_a_usage_error(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="cannot read --file"):
        load_commands([], str(tmp_path / "nope.txt"))


def test_non_utf8_file_is_a_usage_error(tmp_path: Path) -> None:
    path = tmp_path / "latin1.txt"
    path.write_bytes(b"echo caf\xe9\n")
    with pytest.raises(UsageError, match="not UTF-8"):
        load_commands([], str(path))


@pytest.mark.parametrize(
    ("text", "expected"),
    [("0", SHELL), ("shell", SHELL), ("1", POWERSHELL), ("PowerShell", POWERSHELL), ("pwsh", 1)],
)
def test_cmdtyp_names(text: str, expected: int) -> None:
    assert parse_cmdtyp(text) == expected
