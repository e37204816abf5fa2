"""Validating a batch of commands and turning it into what goes on the wire.

Everything is checked before a single byte is sent, because a half-sent batch has
already run commands on a remote host.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from remsvc_core.errors import CommandValidationError
from remsvc_core.hashing import command_hash

SHELL = 0
POWERSHELL = 1
COMMAND_TYPES = {SHELL: "shell", POWERSHELL: "PowerShell"}
COMMAND_KEYS = ("cmd", "cmdtyp", "cmdusr", "src")
_INT32_MAX = 2**31 - 1


@dataclass(frozen=True, slots=True)
class Command:
    """One validated command with its transaction id and hash assigned."""

    tid: int
    cmd: str
    cmdtyp: int = SHELL
    cmdusr: str = ""
    src: str = ""

    @property
    def hsh(self) -> str:
        return command_hash(self.cmd)

    def as_dict(self) -> dict[str, Any]:
        """The command in the input shape, with ``tid`` and ``hsh`` added."""
        return {
            "tid": self.tid,
            "cmd": self.cmd,
            "cmdtyp": self.cmdtyp,
            "cmdusr": self.cmdusr,
            "src": self.src,
            "hsh": self.hsh,
        }


CommandInput = str | Mapping[str, Any]


#: Called with one message per command that has keys remsvc does not know.
UnknownKeys = Callable[[str], None]


def validate_commands(
    commands: Sequence[CommandInput] | Any,
    *,
    default_src: str = "",
    on_unknown_keys: UnknownKeys | None = None,
) -> list[Command]:
    """Check a batch and assign ``tid`` = 1-based position.

    Each item is a mapping with ``cmd`` (required) and optional ``cmdtyp`` (0 shell,
    1 PowerShell), ``cmdusr`` and ``src``; a bare string is shorthand for ``{"cmd": s}``.
    ``default_src`` fills ``src`` where an item gives none.

    A key that is none of those is an error, unless ``on_unknown_keys`` is given: then
    the key is ignored and ``on_unknown_keys`` gets a message naming it and the closest
    known key (the Airflow operator does this, because airflow-provider-remsvc 1.0.0
    ignored such keys and DAGs written for it may carry them).

    Raises :class:`CommandValidationError` naming the index (0-based, as in the
    caller's list) and the field at fault.
    """
    if isinstance(commands, (str, bytes)) or not isinstance(commands, Sequence):
        raise CommandValidationError(
            f"commands must be a list of command dicts, got {type(commands).__name__}; "
            'write commands=[{"cmd": "echo hello"}]'
        )
    if not commands:
        raise CommandValidationError(
            'commands is empty; give at least one, e.g. [{"cmd": "echo hello"}]'
        )
    if len(commands) > _INT32_MAX:
        raise CommandValidationError(f"too many commands ({len(commands)}); tid is an int32")
    return [
        _validate_one(index, item, default_src, on_unknown_keys)
        for index, item in enumerate(commands)
    ]


def as_batch(commands: Sequence[CommandInput] | Any, *, default_src: str = "") -> list[Command]:
    """The batch to send: ``commands`` validated, or kept as they are when they already
    are validated :class:`Command` objects (whose tids must then be usable)."""
    if (
        isinstance(commands, Sequence)
        and not isinstance(commands, (str, bytes))
        and commands
        and all(isinstance(item, Command) for item in commands)
    ):
        batch = list(commands)
        tids = [command.tid for command in batch]
        if len(set(tids)) != len(tids) or min(tids) < 1 or max(tids) > _INT32_MAX:
            raise CommandValidationError(
                "already-validated commands must have distinct tids between 1 and 2**31-1; "
                "pass the raw command dicts instead and let remsvc number them"
            )
        return batch
    return validate_commands(commands, default_src=default_src)


def _validate_one(
    index: int, item: CommandInput, default_src: str, on_unknown_keys: UnknownKeys | None
) -> Command:
    where = f"commands[{index}]"
    if isinstance(item, str):
        item = {"cmd": item}
    if not isinstance(item, Mapping):
        raise CommandValidationError(
            f"{where} must be a dict like {{'cmd': 'hostname'}}, got {type(item).__name__}"
        )
    unknown = sorted(str(key) for key in item if key not in COMMAND_KEYS)
    if unknown and on_unknown_keys is None:
        raise CommandValidationError(
            f"{where} has unknown field(s) {', '.join(map(repr, unknown))}; "
            f"allowed fields are {', '.join(COMMAND_KEYS)} (tid and hsh are assigned for you)"
        )
    if unknown and on_unknown_keys is not None:
        on_unknown_keys(unknown_keys_message(where, unknown))
    if "cmd" not in item:
        raise CommandValidationError(f"{where} has no 'cmd'; every command needs one")
    cmd = item["cmd"]
    if not isinstance(cmd, str):
        raise CommandValidationError(f"{where}.cmd must be a string, got {type(cmd).__name__}")
    if not cmd.strip():
        raise CommandValidationError(
            f"{where}.cmd is blank; give the command line to run or remove the entry"
        )
    _refuse_nul(cmd, f"{where}.cmd")
    cmdtyp = item.get("cmdtyp", SHELL)
    if isinstance(cmdtyp, bool) or not isinstance(cmdtyp, int) or cmdtyp not in COMMAND_TYPES:
        raise CommandValidationError(
            f"{where}.cmdtyp must be 0 (shell) or 1 (PowerShell), got {cmdtyp!r}"
        )
    cmdusr = _optional_text(item, "cmdusr", where)
    _refuse_nul(cmdusr, f"{where}.cmdusr")
    src = _optional_text(item, "src", where) or default_src
    return Command(tid=index + 1, cmd=cmd, cmdtyp=cmdtyp, cmdusr=cmdusr, src=src)


def _optional_text(item: Mapping[str, Any], key: str, where: str) -> str:
    value = item.get(key)
    if value is None:
        return ""
    if not isinstance(value, str):
        raise CommandValidationError(f"{where}.{key} must be a string, got {type(value).__name__}")
    return value


def _refuse_nul(text: str, where: str) -> None:
    # A command line and a user name end up as C strings (argv, getpwnam): a NUL can
    # never reach the shell intact, and servers fail on it in their own ways.
    position = text.find("\x00")
    if position >= 0:
        raise CommandValidationError(
            f"{where} contains a NUL character (\\x00) at position {position}; "
            "a command line or user name cannot carry one; remove it"
        )


def unknown_keys_message(where: str, unknown: Sequence[str]) -> str:
    """What ignoring ``unknown`` keys of the command at ``where`` is reported as."""
    parts = []
    for key in unknown:
        if key in ("tid", "hsh"):
            parts.append(f"{key!r} (assigned by remsvc)")
            continue
        close = difflib.get_close_matches(key.lower(), COMMAND_KEYS, n=1, cutoff=0.5)
        parts.append(f"{key!r} (did you mean {close[0]!r}?)" if close else repr(key))
    return (
        f"{where}: ignoring unknown key(s) {', '.join(parts)}; "
        f"the keys a command has are {', '.join(COMMAND_KEYS)}"
    )
