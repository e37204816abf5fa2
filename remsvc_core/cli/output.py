"""Printing values as a table, JSON or CSV, whatever shape a handler returned.

pandas is never imported here: the base install has no pandas, and a value can only be
a DataFrame if something else already imported it.
"""

from __future__ import annotations

import contextlib
import csv
import dataclasses
import datetime
import io
import json
import math
import numbers
import os
import re
import shutil
import sys
from collections.abc import Mapping, Sequence
from typing import Any, TextIO

FORMATS = ("table", "json", "csv")
RESULT_COLUMNS = ("tid", "rc", "out", "err")
# A fan-out's rows say which host they came from, before anything else.
_HOST = "host"
_ECHO_COLUMNS = ("cmd", "hsh")
_GAP = "  "
_MIN_TEXT_WIDTH = 6
# Remote output can hold escape sequences that would repaint the user's terminal.
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")

Table = tuple[list[str], list[list[Any]]]


def terminal_width(stream: TextIO) -> int | None:
    """The width to fit a table to, or None (no limit) when ``stream`` is not a terminal."""
    if not _isatty(stream):
        return None
    return shutil.get_terminal_size().columns


def _isatty(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


def silence_stdout() -> None:
    """After EPIPE: point stdout at /dev/null so the flush at exit cannot fail again."""
    with contextlib.suppress(OSError, ValueError, AttributeError):
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())


def is_dataframe(value: Any) -> bool:
    pandas = sys.modules.get("pandas")
    return pandas is not None and isinstance(value, pandas.DataFrame)


def is_series(value: Any) -> bool:
    pandas = sys.modules.get("pandas")
    return pandas is not None and isinstance(value, pandas.Series)


def tabulate(value: Any) -> Table:
    """Columns and rows for any value: a DataFrame, ``{tid: dict}``, a list of dicts,
    a list of scalars, a flat dict, or a single value."""
    if is_series(value):
        value = value.to_frame()
    if is_dataframe(value):
        return _dataframe_rows(value)
    if isinstance(value, Mapping):
        if value and all(isinstance(row, Mapping) for row in value.values()):
            # The raw handler input: {tid: result}. Keep the tid even if a row lacks it.
            return _dict_rows([{"tid": key, **row} for key, row in value.items()])
        return ["key", "value"], [[key, item] for key, item in value.items()]
    if isinstance(value, Sequence) and not isinstance(value, (str, bytes)):
        if value and all(isinstance(row, Mapping) for row in value):
            return _dict_rows(list(value))
        return ["value"], [[item] for item in value]
    return ["value"], [[value]]


def _dict_rows(rows: list[Mapping[str, Any]]) -> Table:
    columns: dict[str, None] = {}
    for row in rows:
        columns.update(dict.fromkeys(str(key) for key in row))
    names = list(columns)
    return names, [[row.get(name) for name in names] for row in rows]


def _dataframe_rows(frame: Any) -> Table:
    if any(name is not None for name in frame.index.names):
        frame = frame.reset_index()
    columns = [str(name) for name in frame.columns]
    rows = [list(row) for row in frame.itertuples(index=False, name=None)]
    return columns, rows


def result_view(table: Table) -> Table:
    """For result rows: tid, rc, out, err first (after the host, for a fan-out), then
    any extra columns a handler added.

    ``cmd`` and ``hsh`` echo what was sent; on a terminal they only crowd the output.
    """
    columns, rows = table
    if not set(RESULT_COLUMNS) <= set(columns):
        return table
    first = ((_HOST,) if _HOST in columns else ()) + RESULT_COLUMNS
    extras = [name for name in columns if name not in (*first, *_ECHO_COLUMNS)]
    picks = [columns.index(name) for name in (*first, *extras)]
    return [columns[i] for i in picks], [[row[i] for i in picks] for row in rows]


def render_table(table: Table, width: int | None = None) -> str:
    """Aligned columns, one line per row (first line of each cell), fitted to ``width``."""
    columns, rows = table
    cells = [[_one_line(value) for value in row] for row in rows]
    natural = [max([len(name)] + [len(row[i]) for row in cells]) for i, name in enumerate(columns)]
    widths = _fit(natural, columns, width)
    numeric = [all(_is_number(row[i]) for row in rows) and bool(rows) for i in range(len(columns))]
    lines = [_format_line(columns, widths, [False] * len(columns))]
    lines += [_format_line(row, widths, numeric) for row in cells]
    return "\n".join(lines) + "\n"


def _fit(natural: list[int], columns: list[str], width: int | None) -> list[int]:
    # Cap the widest columns at one common width, the largest that fits: narrow
    # columns (tid, rc) keep their size and the text columns share the rest.
    gaps = len(_GAP) * (len(natural) - 1)
    if width is None or sum(natural) + gaps <= width:
        return natural
    floor = [
        min(n, max(len(name), _MIN_TEXT_WIDTH)) for n, name in zip(natural, columns, strict=True)
    ]
    low, high = 0, max(natural)
    while low < high:
        cap = (low + high + 1) // 2
        if sum(max(f, min(n, cap)) for n, f in zip(natural, floor, strict=True)) + gaps <= width:
            low = cap
        else:
            high = cap - 1
    return [max(f, min(n, low)) for n, f in zip(natural, floor, strict=True)]


def _format_line(values: Sequence[str], widths: list[int], right: list[bool]) -> str:
    parts = []
    for value, size, align_right in zip(values, widths, right, strict=True):
        text = value if len(value) <= size else value[: max(size - 1, 0)] + "…"
        parts.append(text.rjust(size) if align_right else text.ljust(size))
    return _GAP.join(parts).rstrip()


def _one_line(value: Any) -> str:
    if _missing(value):
        return ""
    text = str(value)
    lines = text.strip("\n").splitlines()
    first = lines[0] if lines else ""
    if len(lines) > 1:
        first += " …"
    return _CONTROL.sub("?", first.replace("\t", " "))


def _is_number(value: Any) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def render_csv(table: Table) -> str:
    """RFC 4180 CSV with a header row; cells keep their full text."""
    columns, rows = table
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(columns)
    for row in rows:
        writer.writerow(["" if _missing(value) else value for value in row])
    return buffer.getvalue()


def _missing(value: Any) -> bool:
    """None, NaN, and pandas' NA/NaT: shown as an empty cell."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return True
    return _missing_scalar(value)


def render_json(value: Any) -> str:
    return json.dumps(to_jsonable(value), indent=2, ensure_ascii=False) + "\n"


def to_jsonable(value: Any) -> Any:
    """Plain JSON types for anything a handler may return (DataFrames become records)."""
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, float):
        return None if math.isnan(value) or math.isinf(value) else value
    if is_series(value):
        value = value.to_frame()
    if is_dataframe(value):
        columns, rows = _dataframe_rows(value)
        return [{c: to_jsonable(v) for c, v in zip(columns, row, strict=True)} for row in rows]
    if isinstance(value, Mapping):
        return {str(key): to_jsonable(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_jsonable(item) for item in value]
    if isinstance(value, (set, frozenset)):
        return sorted((to_jsonable(item) for item in value), key=repr)
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    if isinstance(value, (datetime.date, datetime.time)):
        return value.isoformat()
    if hasattr(value, "to_json") and callable(value.to_json):
        return to_jsonable(value.to_json())
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return to_jsonable(dataclasses.asdict(value))
    item = getattr(value, "item", None)  # numpy scalars, pandas NA-free scalars
    if callable(item):
        try:
            return to_jsonable(item())
        except (TypeError, ValueError):
            pass
    if _missing_scalar(value):
        return None
    return str(value)


def _missing_scalar(value: Any) -> bool:
    pandas = sys.modules.get("pandas")
    if pandas is None or isinstance(value, (str, bytes, Mapping, Sequence)):
        return False
    try:
        result = pandas.isna(value)
    except (TypeError, ValueError):
        return False
    # For array-likes isna answers per element; only a scalar answer means "missing".
    return getattr(result, "shape", ()) == () and bool(result)
