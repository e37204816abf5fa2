"""Reading the commands for ``remsvc run`` from arguments, a file or stdin.

A file holds one command per line, or JSON when its first character is ``[``: a
list of strings, or of command dicts with cmd/cmdtyp/cmdusr/src.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from typing import Any

from remsvc_core.cli.exit_codes import UsageError
from remsvc_core.commands import POWERSHELL, SHELL, Command, validate_commands
from remsvc_core.errors import CommandValidationError

_CMDTYP_NAMES = {
    "0": SHELL,
    "shell": SHELL,
    "sh": SHELL,
    "1": POWERSHELL,
    "powershell": POWERSHELL,
    "pwsh": POWERSHELL,
}


def parse_cmdtyp(text: str) -> int:
    """argparse type for --cmdtyp: 0/shell or 1/powershell."""
    try:
        return _CMDTYP_NAMES[text.strip().lower()]
    except KeyError:
        raise argparse.ArgumentTypeError(f"{text!r} is not 0/shell or 1/powershell") from None


def load_commands(
    arguments: Sequence[str],
    file: str | None,
    *,
    cmdtyp: int | None = None,
    user: str | None = None,
    src: str | None = None,
) -> list[Command]:
    """The validated batch; raises UsageError naming the source and the fix."""
    if arguments and file:
        raise UsageError("give commands as arguments or with --file, not both")
    if file:
        where = "stdin" if file == "-" else file
        items = parse_command_text(read_input(file, "--file"), where)
    elif arguments:
        where = "the command line"
        items = list(arguments)
    else:
        raise UsageError(
            'no commands given; write e.g. remsvc run "echo hello", or --file FILE (- for stdin)'
        )
    defaults = {"cmdtyp": cmdtyp, "cmdusr": user, "src": src}
    filled = [_fill_defaults(item, defaults) for item in items]
    try:
        return validate_commands(filled)
    except CommandValidationError as exc:
        raise UsageError(f"in {where}: {exc}") from None


def parse_command_text(text: str, where: str) -> list[Any]:
    """One command per line (blank and ``#`` lines skipped), or a JSON list."""
    text = text.lstrip("\ufeff")
    if text.lstrip().startswith("["):
        try:
            items = json.loads(text)
        except json.JSONDecodeError as exc:
            raise UsageError(
                f"{where} starts with '[' but is not valid JSON: {exc.msg} at line {exc.lineno} "
                f"column {exc.colno}; fix the JSON or write one command per line"
            ) from None
        return list(items)  # valid JSON starting with '[' is always a list
    lines = [line.strip() for line in text.splitlines()]
    commands = [line for line in lines if line and not line.startswith("#")]
    if not commands:
        raise UsageError(f"{where} holds no commands (blank lines and # comments are skipped)")
    return commands


def read_input(file: str, option: str) -> str:
    """The text of the file an option names (``-``: stdin); UsageError naming the option."""
    if file == "-":
        return sys.stdin.read()
    try:
        with open(file, encoding="utf-8") as handle:
            return handle.read()
    except OSError as exc:
        raise UsageError(f"cannot read {option} {file!r}: {exc.strerror}") from None
    except UnicodeDecodeError as exc:
        raise UsageError(f"{option} {file!r} is not UTF-8 text ({exc.reason})") from None


def _fill_defaults(item: Any, defaults: dict[str, Any]) -> Any:
    """Apply --cmdtyp/--user/--src to every command that does not set its own."""
    given = {key: value for key, value in defaults.items() if value is not None}
    if isinstance(item, str):
        return {"cmd": item, **given}
    if isinstance(item, dict):
        return {**given, **item}
    return item  # validate_commands names the bad type and position
