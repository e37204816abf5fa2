"""``json_lines``: each command's stdout read as JSON Lines (one JSON value per line)."""

from __future__ import annotations

import json
from typing import Any

from remsvc_core.errors import HandlerError, StopStream
from remsvc_core.handlers import result_handler, result_list
from remsvc_core.hookspecs import hookimpl


def parse_lines(text: str) -> tuple[list[Any], list[int]]:
    """The JSON values in ``text``, one per non-blank line, and the 1-based numbers of
    the lines that are not JSON."""
    records: list[Any] = []
    bad: list[int] = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            bad.append(number)
    return records, bad


class FirstBadLineStops:
    """Fail fast: end the stream at the first command whose stdout is not JSON Lines,
    instead of waiting for the rest of the batch."""

    @hookimpl
    def remsvc_result(self, result: Any) -> None:
        _, bad = parse_lines(result.out)
        if bad:
            raise StopStream(f"json_lines: tid {result.tid} stdout line {bad[0]} is not JSON")


def make_hook(*, strict: bool = True) -> FirstBadLineStops | None:
    return FirstBadLineStops() if strict else None


def check_options(*, strict: bool = True) -> None:
    if not isinstance(strict, bool):
        raise ValueError(f"strict must be true or false, got {strict!r}")


@result_handler(result_hook=make_hook, validate_options=check_options)
def json_lines(results: Any, *, strict: bool = True) -> list[dict[str, Any]]:
    """Parse each command's stdout as JSON Lines, one item per command.

    Returns ``[{"tid", "cmd", "rc", "records": [...], "bad_lines": [...]}]`` in
    command order; ``records`` holds the parsed values, ``bad_lines`` the 1-based
    numbers of lines that were not JSON. With ``strict`` (the default) any bad line
    fails the step, and the stream itself stops at the first one.
    """
    items = []
    for row in result_list(results, handler="'json_lines'"):
        records, bad = parse_lines(str(row.get("out") or ""))
        if bad and strict:
            raise HandlerError(
                f"json_lines: tid {row['tid']} ({row.get('cmd')!r}) has non-JSON stdout on "
                f"line(s) {', '.join(map(str, bad))}; pass strict=false to keep going"
            )
        items.append(
            {
                "tid": row["tid"],
                "cmd": row.get("cmd", ""),
                "rc": row.get("rc"),
                "records": records,
                "bad_lines": bad,
            }
        )
    return items
