"""Tables, CSV and JSON for every shape a handler may return."""

from __future__ import annotations

import csv
import io
import json
import math

import pandas as pd
import pytest

from remsvc_core.cli.output import (
    render_csv,
    render_json,
    render_table,
    result_view,
    tabulate,
    to_jsonable,
)

RESULTS = [
    {"tid": 1, "rc": 0, "out": "hello\n", "err": "", "hsh": "aaaaaaaa", "cmd": "echo hello"},
    {"tid": 2, "rc": 2, "out": "", "err": "first\nsecond\n", "hsh": "bbbbbbbb", "cmd": "false"},
]


def test_result_rows_show_tid_rc_and_first_lines() -> None:
    table = render_table(result_view(tabulate(RESULTS)))
    lines = table.splitlines()
    assert lines[0].split() == ["tid", "rc", "out", "err"]
    assert lines[1].split() == ["1", "0", "hello"]
    assert lines[2].split() == ["2", "2", "first", "…"]  # more lines follow: marked
    assert "second" not in table
    assert "hsh" not in table


def test_raw_mapping_keeps_tids() -> None:
    columns, rows = tabulate({3: {"rc": 0, "out": "x"}, 4: {"rc": 1, "out": "y"}})
    assert columns == ["tid", "rc", "out"]
    assert rows == [[3, 0, "x"], [4, 1, "y"]]


def test_table_fits_the_width_by_shrinking_text_columns() -> None:
    rows = [{"tid": 1, "rc": 0, "out": "x" * 300, "err": "e" * 200}]
    table = render_table(result_view(tabulate(rows)), width=60)
    for line in table.splitlines():
        assert len(line) <= 60
    assert "…" in table
    assert table.splitlines()[1].startswith("  1")  # tid kept whole, right-aligned


def test_terminal_escape_sequences_are_neutralised() -> None:
    table = render_table(tabulate([{"tid": 1, "out": "\x1b[2Jcleared\x07"}]))
    assert "\x1b" not in table
    assert "\x07" not in table
    assert "?[2Jcleared?" in table


def test_csv_keeps_full_text_and_round_trips() -> None:
    text = render_csv(tabulate(RESULTS))
    rows = list(csv.DictReader(io.StringIO(text)))
    assert [r["tid"] for r in rows] == ["1", "2"]
    assert rows[1]["err"] == "first\nsecond\n"
    assert rows[0]["cmd"] == "echo hello"


def test_dataframe_with_named_index_in_every_format() -> None:
    frame = pd.DataFrame(RESULTS).set_index("tid")
    frame["ratio"] = [0.5, math.nan]
    columns, rows = tabulate(frame)
    assert columns[0] == "tid"
    assert "ratio" in columns
    csv_rows = list(csv.DictReader(io.StringIO(render_csv((columns, rows)))))
    assert csv_rows[0]["tid"] == "1"
    assert csv_rows[1]["ratio"] == ""
    records = to_jsonable(frame)
    assert records[0]["tid"] == 1
    assert records[1]["ratio"] is None
    assert json.loads(render_json(frame))[1]["err"] == "first\nsecond\n"
    table = render_table((columns, rows))
    assert table.splitlines()[0].split()[0] == "tid"


def test_dataframe_with_range_index_drops_it() -> None:
    columns, _ = tabulate(pd.DataFrame({"a": [1, 2]}))
    assert columns == ["a"]


def test_series_and_scalars_and_lists() -> None:
    assert tabulate(pd.Series([1, 2], name="n"))[0] == ["n"]
    assert tabulate(7) == (["value"], [[7]])
    assert tabulate(["a", "b"]) == (["value"], [["a"], ["b"]])
    assert tabulate({"ok": True}) == (["key", "value"], [["ok", True]])


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ({1: {"rc": 0}}, {"1": {"rc": 0}}),
        ({3, 1}, [1, 3]),
        (b"\xffok", "\ufffdok"),
        (float("inf"), None),
        (pd.Timestamp("2024-01-02T03:04:05"), "2024-01-02T03:04:05"),
        (pd.NA, None),
    ],
)
def test_to_jsonable(value: object, expected: object) -> None:
    assert to_jsonable(value) == expected
    json.dumps(to_jsonable(value))


def test_result_view_keeps_extra_columns_after_the_result_ones() -> None:
    frame = pd.DataFrame(RESULTS)
    frame["hash_ok"] = [True, False]
    columns, rows = result_view(tabulate(frame))
    assert columns == ["tid", "rc", "out", "err", "hash_ok"]
    assert rows[1] == [2, 2, "", "first\nsecond\n", False]
