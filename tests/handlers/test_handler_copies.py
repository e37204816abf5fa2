"""Who may change which result dicts: the copy rules of the handler pipeline.

The pipeline reads the caller's results in place and copies a row only before a step
not marked ``@reads_result_rows`` and on the way out (remsvc_core/handlers/_sharing.py).
These tests hold it to what that must never cost: the caller's results are never
changed, what comes out shares no dict with them, a user's callable can change only its
own copies, a plugin's handler reading in place gets the same rows the built-ins get,
and the rows and columns come out as they did when every row was copied.
"""

from __future__ import annotations

import json
import sys
from typing import Any

import pandas as pd
import pytest

from remsvc_core.errors import HandlerError
from remsvc_core.handlers import ResultRows, resolve_handler, result_list, result_rows
from remsvc_core.hashing import command_hash
from remsvc_handlers.dataframe import to_dataframe
from remsvc_handlers.rc_filter import rc_filter
from remsvc_handlers.sorted import sorted_results
from remsvc_handlers.verify_hash import verify_hash

ORDER = list(range(1, 15))
RC_FILTER_SUCCESSES = {"name": "rc_filter", "options": {"keep": "successes"}}
MARK = {"name": "verify_hash", "options": {"on_mismatch": "mark"}}
LIST_SPECS = [
    "sorted",
    RC_FILTER_SUCCESSES,
    {"name": "rc_filter", "options": {"keep": "all"}},
    "verify_hash",
    MARK,
    ["verify_hash", RC_FILTER_SUCCESSES, "sorted"],
    [MARK, "sorted", {"name": "rc_filter", "options": {"keep": "failures"}}],
]


def snapshot(value: Any) -> str:
    return json.dumps(value, sort_keys=True)


def dict_ids(rows: Any) -> set[int]:
    values = rows.values() if isinstance(rows, dict) else rows
    return {id(row) for row in values}


def int_keyed_and_json(many_results: dict[int, Any]) -> list[Any]:
    """The raw mapping as the engine gives it (int keys, in order) and as JSON gives it
    back (string keys, text order): the two ways into the pipeline's view."""
    in_order = {tid: many_results[tid] for tid in ORDER}
    return [in_order, json.loads(json.dumps(many_results))]


@pytest.mark.parametrize("spec", LIST_SPECS, ids=json.dumps)
def test_a_list_out_of_the_pipeline_shares_no_dict_with_the_input(
    spec: Any, many_results: dict[int, Any]
) -> None:
    for raw in int_keyed_and_json(many_results):
        before = snapshot(raw)
        out = resolve_handler(spec).apply(raw)
        assert type(out) is list  # the pipeline's private row type never leaves it
        assert all(type(row) is dict for row in out)
        assert not dict_ids(out) & dict_ids(raw)
        for row in out:  # the caller may do what it likes with what it got
            row["out"] = "changed by the caller"
        assert snapshot(raw) == before
        again = resolve_handler(spec).apply(raw)
        assert all(row["out"] != "changed by the caller" for row in again)


def test_every_builtin_step_leaves_the_callers_results_as_they_were(
    many_results: dict[int, Any],
) -> None:
    everything = [MARK, RC_FILTER_SUCCESSES, "sorted", "dataframe", "sorted", "verify_hash"]
    for raw in int_keyed_and_json(many_results):
        before = snapshot(raw)
        resolve_handler(everything).apply(raw)
        assert snapshot(raw) == before


def test_a_callable_first_gets_its_own_int_keyed_copy(many_results: dict[int, Any]) -> None:
    seen: list[Any] = []

    def vandal(results: Any) -> Any:
        seen.append(results)
        for row in results.values():
            row["rc"] = 99
            row.pop("out")
        results.clear()
        return "done"

    raw = json.loads(json.dumps(many_results))
    before = snapshot(raw)
    assert resolve_handler(vandal).apply(raw) == "done"
    assert snapshot(raw) == before
    assert type(seen[0]) is dict


def test_a_callable_between_builtins_changes_only_its_own_copies(
    many_results: dict[int, Any],
) -> None:
    given: list[Any] = []

    def shout(rows: Any) -> Any:
        given.append(rows)
        for row in rows:
            row["out"] = row["out"].upper()  # changes what it was given, in place
        return rows

    raw = {tid: many_results[tid] for tid in ORDER}
    before = snapshot(raw)
    pipeline = resolve_handler([RC_FILTER_SUCCESSES, shout, "dataframe"])
    frame = pipeline.apply(raw)
    assert snapshot(raw) == before
    assert type(given[0]) is list
    assert not dict_ids(given[0]) & dict_ids(raw)
    assert frame.loc[frame["tid"] == 1, "out"].item() == "LINE 1\n"  # the next step saw it


def test_errors_describe_what_the_step_was_given_as_before(
    many_results: dict[int, Any],
) -> None:
    raw = json.loads(json.dumps(many_results))
    raw["5"]["hsh"] = "deadbeef"
    with pytest.raises(HandlerError) as first:
        resolve_handler("verify_hash").apply(raw)
    assert "failed on a dict with 14 entries from the raw results" in str(first.value)
    with pytest.raises(HandlerError) as second:
        resolve_handler([RC_FILTER_SUCCESSES, "verify_hash"]).apply(raw)
    assert "failed on a list of 11 item(s) from step 1 ('rc_filter')" in str(second.value)


def test_called_directly_builtins_return_plain_copies(make_result: Any) -> None:
    rows = [make_result(3, "c", rc=1), make_result(1, "a"), make_result(2, "b")]
    before = snapshot(rows)
    for out in (
        sorted_results(rows),
        rc_filter(rows),
        rc_filter(rows, keep="failures"),
        verify_hash(rows),
        verify_hash(rows, on_mismatch="mark"),
        result_list(rows),
    ):
        assert type(out) is list
        assert len(out) >= 1
        assert not dict_ids(out) & dict_ids(rows)
        for row in out:
            row["cmd"] = "changed"
    assert snapshot(rows) == before


IN_PLACE_MODULE = """
from remsvc_core.handlers import ResultRows, reads_result_rows, result_rows

GIVEN = []


@reads_result_rows
def with_output(results):
    \"\"\"Only the results with some stdout.\"\"\"
    GIVEN.append(results)
    rows = result_rows(results, handler="with_output")
    return rows.derive(row for row in rows if row.get("out"))


@reads_result_rows
def numbered(results):
    \"\"\"Every result with its position.\"\"\"
    rows = result_rows(results, handler="numbered")
    return ResultRows.fresh({**row, "n": n} for n, row in enumerate(rows, start=1))
"""


def test_a_plugin_handler_can_read_in_place_like_the_builtins(
    fake_dists: Any, many_results: dict[int, Any]
) -> None:
    fake_dists.add(
        "in-place-handlers",
        {"with_output": "in_place_mod:with_output", "numbered": "in_place_mod:numbered"},
        {"in_place_mod": IN_PLACE_MODULE},
    )
    raw = {tid: many_results[tid] for tid in ORDER}
    before = snapshot(raw)
    out = resolve_handler(["with_output", "numbered", "sorted"]).apply(raw)

    given = sys.modules["in_place_mod"].GIVEN[0]
    assert isinstance(given, ResultRows)  # the pipeline's view, not a copy...
    assert dict_ids(given) == dict_ids(raw)  # ...holding the caller's own dicts
    assert [row["tid"] for row in out] == [tid for tid in ORDER if tid not in (3, 12)]
    assert [row["n"] for row in out] == list(range(1, 13))
    assert type(out) is list
    assert not dict_ids(out) & dict_ids(raw)
    assert snapshot(raw) == before

    direct = sys.modules["in_place_mod"].with_output(raw)  # called directly: copies
    assert type(direct) is list
    assert len(direct) == 12
    assert not dict_ids(direct) & dict_ids(raw)


def test_the_rows_view_cannot_be_changed_and_fresh_rows_are_put_in_shape(
    make_result: Any,
) -> None:
    rows = result_rows({2: make_result(2, "b"), 1: make_result(1, "a")})
    assert [row["tid"] for row in rows] == [1, 2]
    assert [row["tid"] for row in rows[1:]] == [2]
    assert isinstance(rows[1:], ResultRows)
    with pytest.raises(TypeError):
        rows[0] = make_result(3, "c")  # type: ignore[index]
    assert not hasattr(rows, "append")
    assert rows.column("cmd") == ["a", "b"]
    assert rows.complete_column("note") is None
    assert rows.column("note") == [None, None]
    fresh = ResultRows.fresh([{"tid": "7", "rc": 0}])
    assert [row["tid"] for row in fresh] == [7]


def test_rows_that_need_fixing_are_read_like_the_rest() -> None:
    # A string tid inside the dict, a tid only in the key, another Mapping type.
    from types import MappingProxyType

    raw: dict[Any, Any] = {
        "2": {"tid": "2", "rc": 0, "out": "b", "err": "", "hsh": "", "cmd": "b"},
        3: {"rc": 1, "out": "c", "err": "e", "hsh": "", "cmd": "c"},
        1: MappingProxyType({"tid": 1, "rc": 0, "out": "a", "err": "", "hsh": "", "cmd": "a"}),
    }
    before = {key: dict(value) for key, value in raw.items()}
    out = resolve_handler("sorted").apply(raw)
    assert [row["tid"] for row in out] == [1, 2, 3]
    assert all(type(row["tid"]) is int for row in out)
    assert {key: dict(value) for key, value in raw.items()} == before  # "2" is still "2"
    frame = resolve_handler("dataframe").apply(raw)
    assert frame["tid"].tolist() == [1, 2, 3]
    assert frame["rc"].tolist() == [0, 0, 1]


def reference_frame(rows: list[dict[str, Any]]) -> pd.DataFrame:
    """The frame the handler promises, built the slow, obvious way."""
    return pd.DataFrame(
        {
            "tid": pd.array([int(r["tid"]) for r in rows], dtype="int64"),
            "cmd": pd.array([str(r.get("cmd") or "") for r in rows], dtype="string"),
            "rc": pd.array([int(r["rc"]) for r in rows], dtype="int64"),
            "out": pd.array(
                ["" if r.get("out") is None else str(r["out"]) for r in rows], dtype="string"
            ),
            "err": pd.array(
                ["" if r.get("err") is None else str(r["err"]) for r in rows], dtype="string"
            ),
            "hsh": pd.array([str(r.get("hsh") or "") for r in rows], dtype="string"),
        }
    )


def test_dataframe_columns_match_the_obvious_construction(many_results: dict[int, Any]) -> None:
    rows = [many_results[tid] for tid in ORDER]
    pd.testing.assert_frame_equal(to_dataframe(many_results), reference_frame(rows))
    assert isinstance(to_dataframe(many_results).index, pd.RangeIndex)


def test_dataframe_reads_untidy_values_as_text_and_integers() -> None:
    # Values the fast path does not take: numeric-string exit codes, None and
    # missing text, a number as output. They read as the tidy values would.
    untidy = {
        "1": {"tid": 1, "rc": "0", "out": None, "err": "", "hsh": "h", "cmd": "a"},
        "2": {"tid": 2, "rc": 2, "out": 5, "hsh": "h", "cmd": "b"},
    }
    tidy = [
        {"tid": 1, "rc": 0, "out": "", "err": "", "hsh": "h", "cmd": "a"},
        {"tid": 2, "rc": 2, "out": "5", "err": "", "hsh": "h", "cmd": "b"},
    ]
    pd.testing.assert_frame_equal(to_dataframe(untidy), reference_frame(tidy))


@pytest.mark.parametrize("rc", [None, "x", True, 1.5])
def test_dataframe_names_the_tid_with_a_bad_exit_code(rc: Any) -> None:
    rows = [
        {"tid": 1, "rc": 0, "out": "", "err": "", "hsh": "", "cmd": ""},
        {"tid": 7, "rc": rc, "out": "", "err": "", "hsh": "", "cmd": ""},
    ]
    with pytest.raises(HandlerError, match=rf"integer 'rc' in every result; tid 7 has {rc!r}"):
        to_dataframe(rows)


def test_dataframe_extra_columns_follow_in_first_seen_order(make_result: Any) -> None:
    rows = [make_result(1, "a"), {**make_result(2, "b"), "note": "x", "size": 3}]
    rows[0]["size"] = 4
    frame = to_dataframe(rows)
    assert list(frame.columns)[6:] == ["size", "note"]
    assert frame["size"].tolist() == [4, 3]
    missing, present = frame["note"].tolist()
    assert pd.isna(missing)  # a row without the key: pandas' missing value
    assert present == "x"


def test_exit_codes_read_as_integers_the_same_everywhere(make_result: Any) -> None:
    # "1" is exit code 1 (JSON may carry it as text); True is no exit code at all.
    rows = [make_result(1, "a"), make_result(2, "b", rc=1), make_result(3, "c", rc=0)]
    rows[1]["rc"] = "1"
    rows[2]["rc"] = True
    assert [r["tid"] for r in rc_filter(rows, keep="failures")] == [2, 3]
    assert [r["tid"] for r in rc_filter(rows, accept=[0, 1], keep="failures")] == [3]
    assert [r["tid"] for r in rc_filter(rows, keep=[1])] == [2]
    raw = {row["tid"]: row for row in rows}
    assert resolve_handler("rc_filter").failed_tids(raw) == [2, 3]
    del raw[1]["rc"]
    assert resolve_handler("rc_filter").failed_tids(raw) == [1, 2, 3]


def test_verify_hash_reads_missing_and_odd_values_as_mismatches_or_text() -> None:
    rows = [
        {"tid": 1, "cmd": "echo a", "hsh": command_hash("echo a")},
        {"tid": 2, "cmd": None, "hsh": command_hash("")},  # no command reads as ""
        {"tid": 3, "cmd": "echo c"},  # no hash
        {"tid": 4, "cmd": "echo d", "hsh": None},
    ]
    marked = verify_hash(rows, on_mismatch="mark")
    assert [row["hash_ok"] for row in marked] == [True, True, False, False]
    assert "hash_ok" not in rows[0]  # marking made new dicts


def test_a_frame_reads_back_as_plain_python_values() -> None:
    import numpy as np

    frame = pd.DataFrame(
        {
            "tid": pd.array([2, 1], dtype="Int64"),
            "rc": [np.int64(0), np.int64(3)],  # an object column of numpy scalars
            "out": pd.array(["x", None], dtype="string"),
            "when": pd.to_datetime(["2024-01-01", None]),
            0: [1.5, float("nan")],
        }
    )
    rows = result_list(frame)
    assert [row["tid"] for row in rows] == [2, 1]  # frame order kept
    assert all(type(row["tid"]) is int and type(row["rc"]) is int for row in rows)
    assert rows[0]["out"] == "x"
    assert rows[1]["out"] is None  # pd.NA
    assert rows[1]["when"] is None  # NaT
    assert rows[0]["0"] == 1.5  # column names become text
    assert [row["tid"] for row in sorted_results(frame)] == [1, 2]


def test_a_frame_without_integer_tids_is_refused() -> None:
    frame = pd.DataFrame({"tid": pd.array([1, None], dtype="Int64"), "rc": [0, 0]})
    with pytest.raises(HandlerError, match=r"no integer 'tid' in the result dict for item 1"):
        sorted_results(frame)
    texts = pd.DataFrame({"tid": ["2", "1"], "rc": [0, 0]})
    assert [row["tid"] for row in sorted_results(texts)] == [1, 2]
