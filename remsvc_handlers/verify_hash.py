"""Checking that every response echoes the hash of the command that was sent."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from remsvc_core.errors import HandlerError, StopStream
from remsvc_core.handlers import (
    ResultRows,
    is_dataframe,
    reads_result_rows,
    result_handler,
    result_rows,
)
from remsvc_core.hashing import command_hash
from remsvc_core.hookspecs import hookimpl

if TYPE_CHECKING:
    from remsvc_core.results import CommandResult

ON_MISMATCH_CHOICES = ("fail", "mark")
_SHOWN = 10


def validate_options(*, on_mismatch: Any = "fail") -> None:
    """``on_mismatch`` must be ``"fail"`` or ``"mark"``."""
    if on_mismatch not in ON_MISMATCH_CHOICES:
        raise ValueError(
            f"on_mismatch={on_mismatch!r} is not one of {', '.join(map(repr, ON_MISMATCH_CHOICES))}"
        )


class HashCheck:
    """Fail-fast check: ends the stream at the first response whose ``hsh`` is not the
    CRC-32 of the command sent with that tid.

    Constant work per result, on the event loop: ``result.cmd`` is the command the
    engine sent with that tid (taken from its own batch, never from the response), so
    the batch is not searched.
    """

    @hookimpl
    def remsvc_result(self, result: CommandResult) -> None:
        expected = command_hash(result.cmd)
        if result.hsh != expected:
            raise StopStream(
                f"verify_hash: tid {result.tid} came back with hsh {result.hsh!r}, "
                f"expected {expected!r} (the hash of the command sent)"
            )


def result_hook(*, on_mismatch: Any = "fail") -> HashCheck | None:
    """A fresh :class:`HashCheck` per stream when mismatches fail; none when they are marked."""
    return HashCheck() if on_mismatch == "fail" else None


@reads_result_rows
@result_handler(result_hook=result_hook, validate_options=validate_options)
def verify_hash(results: Any, *, on_mismatch: Any = "fail") -> Any:
    """Check every response's hsh against the hash of the command sent.

    A response's ``hsh`` must equal ``command_hash(cmd)``: the CRC-32 of the
    command's UTF-8 bytes as 8 lowercase hex digits. A missing or empty ``hsh``
    counts as a mismatch.

    ``on_mismatch="fail"`` (default) raises :class:`HandlerError` listing every
    offending tid; its ``result_hook`` also ends the stream at the first mismatch
    while it runs. ``on_mismatch="mark"`` never fails and adds ``hash_ok`` (bool) to
    every result instead.

    Returns the results as a list of result dicts in command order, or the
    DataFrame it was given (with a ``hash_ok`` column when marking).
    """
    validate_options(on_mismatch=on_mismatch)
    rows = result_rows(results, handler="'verify_hash'")
    verdicts = _verdicts(rows)
    if on_mismatch == "fail":
        if not all(verdicts):
            raise HandlerError(
                _mismatch_message([row for row, ok in zip(rows, verdicts, strict=True) if not ok])
            )
        return results.copy() if is_dataframe(results) else rows
    if is_dataframe(results):
        marked = results.copy()
        marked["hash_ok"] = verdicts
        return marked
    # New dicts: the rows read may be the caller's, and are never changed.
    return ResultRows.fresh({**row, "hash_ok": ok} for row, ok in zip(rows, verdicts, strict=True))


def _verdicts(rows: ResultRows) -> list[bool]:
    """Per row: is ``hsh`` the hash of ``cmd``? A missing or empty ``hsh`` never is."""
    commands = rows.column("cmd")
    if not set(map(type, commands)) <= {str}:
        commands = [str(cmd or "") for cmd in commands]
    # command_hash always gives 8 hex digits, so an empty or missing hsh (or one of
    # another type) compares unequal without a separate test.
    return [
        hsh == expected
        for hsh, expected in zip(rows.column("hsh"), map(command_hash, commands), strict=True)
    ]


def _mismatch_message(bad: list[Mapping[str, Any]]) -> str:
    details = "; ".join(
        f"{_which(row)}: got {row.get('hsh')!r}, expected "
        f"{command_hash(str(row.get('cmd') or ''))!r}"
        for row in bad[:_SHOWN]
    )
    more = f"; and {len(bad) - _SHOWN} more" if len(bad) > _SHOWN else ""
    tids = ", ".join(_which(row).removeprefix("tid ") for row in bad)
    return (
        f"hash check failed for {len(bad)} result(s), tid(s) {tids}: {details}{more}. "
        "A response must echo the CRC-32 of the command sent; a mismatch means the "
        "answer may not belong to that command. Use on_mismatch='mark' to keep going."
    )


def _which(row: Mapping[str, Any]) -> str:
    """``tid 3``, or ``tid 3 on web2`` for a fan-out's result."""
    host = row.get("host")
    return f"tid {row['tid']}" if host is None else f"tid {row['tid']} on {host}"
