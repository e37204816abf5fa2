"""The built-in handlers on result data: alone, in pipelines, with string tids.

These run on hand-built result dicts shaped like the engine's; the same handlers on
real results from the reference server are in test_handler_real_server.py.
"""

from __future__ import annotations

import ast
import json
import sys
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

import remsvc_handlers
from remsvc_core.errors import HandlerError
from remsvc_core.handlers import resolve_handler
from remsvc_handlers.dataframe import COLUMNS, to_dataframe
from remsvc_handlers.rc_filter import rc_filter
from remsvc_handlers.sorted import sorted_results
from remsvc_handlers.verify_hash import verify_hash

ORDER = list(range(1, 15))


def json_round_trip(value: Any) -> Any:
    """What Airflow's trigger event / XCom does to the raw mapping: int keys -> str."""
    return json.loads(json.dumps(value))


# --- sorted ------------------------------------------------------------------------


def test_sorted_orders_by_integer_tid_even_with_string_keys(many_results: Any) -> None:
    as_strings = json_round_trip(many_results)
    assert sorted(as_strings)[:3] == ["1", "10", "11"]  # the trap being avoided
    out = sorted_results(as_strings)
    assert [row["tid"] for row in out] == ORDER
    assert out == sorted_results(many_results)
    assert out == [many_results[tid] for tid in ORDER]  # exactly the six-key dicts


def test_sorted_is_the_seed_output(many_results: Any) -> None:
    out = resolve_handler(None).apply(many_results)
    for row in out:
        assert list(row) == ["tid", "rc", "out", "err", "hsh", "cmd"]
        assert isinstance(row["tid"], int)
    assert [row["tid"] for row in out] == ORDER


def test_sorted_does_not_alias_the_input(many_results: Any) -> None:
    out = sorted_results(many_results)
    out[0]["out"] = "changed"
    assert many_results[1]["out"] == "line 1\n"


def test_sorted_on_lists_and_frames(make_result: Any) -> None:
    rows = [make_result(3, "c"), make_result(1, "a"), make_result(2, "b")]
    assert [r["tid"] for r in sorted_results(rows)] == [1, 2, 3]
    frame = to_dataframe(rows)
    back = sorted_results(frame)
    assert back == sorted_results(rows)
    assert all(type(r["tid"]) is int and type(r["out"]) is str for r in back)


def test_sorted_empty() -> None:
    assert sorted_results({}) == []


@pytest.mark.parametrize(
    ("value", "fragment"),
    [
        ("text", "cannot use a value of type str"),
        ({"x": {"rc": 0}}, "key 'x', which is not a tid"),
        ({"1": "not a dict"}, "expected a result dict for tid 1"),
        ([{"rc": 0}], "no integer 'tid'"),
    ],
)
def test_sorted_rejects_what_it_cannot_read(value: Any, fragment: str) -> None:
    with pytest.raises(HandlerError) as caught:
        sorted_results(value)
    assert fragment in str(caught.value)
    assert "'sorted'" in str(caught.value)


# --- dataframe ---------------------------------------------------------------------


def test_dataframe_shape_and_dtypes(many_results: Any) -> None:
    frame = to_dataframe(json_round_trip(many_results))
    assert list(frame.columns) == list(COLUMNS)
    assert str(frame["tid"].dtype) == "int64"
    assert str(frame["rc"].dtype) == "int64"
    for column in ("cmd", "out", "err", "hsh"):
        assert isinstance(frame[column].dtype, pd.StringDtype), column
    assert isinstance(frame.index, pd.RangeIndex)
    assert frame["tid"].tolist() == ORDER
    assert frame.loc[frame["tid"] == 3, "out"].item() == ""  # empty output stays ""
    assert frame.loc[frame["tid"] == 9, "rc"].item() == 2
    assert frame.loc[frame["tid"] == 4, "err"].item() == "problem 4\n"


def test_dataframe_same_from_mapping_list_and_frame(many_results: Any) -> None:
    from_mapping = to_dataframe(many_results)
    pd.testing.assert_frame_equal(to_dataframe(sorted_results(many_results)), from_mapping)
    pd.testing.assert_frame_equal(to_dataframe(from_mapping), from_mapping)


def test_dataframe_empty_keeps_columns_and_dtypes() -> None:
    frame = to_dataframe({})
    assert list(frame.columns) == list(COLUMNS)
    assert len(frame) == 0
    assert str(frame["rc"].dtype) == "int64"
    assert isinstance(frame["out"].dtype, pd.StringDtype)


def test_dataframe_survives_a_parquet_round_trip(many_results: Any) -> None:
    # Airflow serializes a DataFrame XCom through pyarrow/parquet; the provider tests
    # the real XCom path, this checks the frame has nothing parquet would change.
    import io

    frame = to_dataframe(many_results)
    buffer = io.BytesIO()
    frame.to_parquet(buffer)
    back = pd.read_parquet(io.BytesIO(buffer.getvalue()))
    pd.testing.assert_frame_equal(back, frame)


def test_dataframe_needs_rc() -> None:
    with pytest.raises(HandlerError, match=r"integer 'rc'.*tid 1"):
        to_dataframe([{"tid": 1, "out": "x"}])


def test_dataframe_without_pandas_names_the_install(
    monkeypatch: pytest.MonkeyPatch, many_results: Any
) -> None:
    # pandas is installed in the test environment; a None entry in sys.modules is how
    # Python itself marks a module as unimportable, which is the situation to test.
    monkeypatch.setitem(sys.modules, "pandas", None)
    with pytest.raises(HandlerError) as caught:
        resolve_handler("dataframe").apply(many_results)
    assert "pip install 'airflow-provider-remsvc[pandas]'" in str(caught.value)


# --- rc_filter ---------------------------------------------------------------------


def test_rc_filter_keep_modes(many_results: Any) -> None:
    raw = json_round_trip(many_results)
    assert [r["tid"] for r in rc_filter(raw)] == ORDER
    assert [r["tid"] for r in rc_filter(raw, keep="failures")] == [4, 9, 13]
    assert [r["tid"] for r in rc_filter(raw, keep="successes")] == [
        t for t in ORDER if t not in (4, 9, 13)
    ]
    assert [r["tid"] for r in rc_filter(raw, accept=[0, 1], keep="failures")] == [9]
    assert [r["tid"] for r in rc_filter(raw, keep=[2])] == [9]
    assert [r["tid"] for r in rc_filter(raw, accept=1, keep="successes")] == [4, 13]


def test_rc_filter_accepted_rcs_drive_success(many_results: Any) -> None:
    default = resolve_handler("rc_filter")
    grep_like = resolve_handler({"name": "rc_filter", "options": {"accept": [0, 1]}})
    assert default.accepted_rcs == frozenset({0})
    assert grep_like.accepted_rcs == frozenset({0, 1})
    raw = json_round_trip(many_results)
    assert default.failed_tids(raw) == [4, 9, 13]
    assert grep_like.failed_tids(raw) == [9]


def test_rc_filter_on_a_dataframe(many_results: Any) -> None:
    frame = to_dataframe(many_results)
    failures = rc_filter(frame, keep="failures")
    assert isinstance(failures, pd.DataFrame)
    assert failures["tid"].tolist() == [4, 9, 13]
    assert isinstance(failures.index, pd.RangeIndex)
    assert failures.dtypes.equals(frame.dtypes)
    with pytest.raises(HandlerError, match="without an 'rc' column"):
        rc_filter(frame.drop(columns=["rc"]))


# --- verify_hash -------------------------------------------------------------------


def test_verify_hash_passes_good_results(many_results: Any) -> None:
    out = verify_hash(json_round_trip(many_results))
    assert out == sorted_results(many_results)


def tampered(many_results: Any) -> dict[str, Any]:
    raw = json_round_trip(many_results)
    raw["10"]["hsh"] = "deadbeef"
    raw["2"]["hsh"] = ""  # missing hash counts as a mismatch
    return raw


def test_verify_hash_fail_lists_every_bad_tid(many_results: Any) -> None:
    with pytest.raises(HandlerError) as caught:
        verify_hash(tampered(many_results))
    message = str(caught.value)
    assert "tid(s) 2, 10" in message  # in command order, 2 before 10
    assert "'deadbeef'" in message
    assert "on_mismatch='mark'" in message


def test_verify_hash_mark_adds_hash_ok(many_results: Any) -> None:
    out = verify_hash(tampered(many_results), on_mismatch="mark")
    assert [r["tid"] for r in out] == ORDER
    assert {r["tid"] for r in out if not r["hash_ok"]} == {2, 10}
    frame = to_dataframe(out)
    assert str(frame["hash_ok"].dtype) == "bool"
    assert frame.loc[~frame["hash_ok"], "tid"].tolist() == [2, 10]


def test_verify_hash_on_a_dataframe(many_results: Any) -> None:
    frame = to_dataframe(tampered(many_results))
    marked = verify_hash(frame, on_mismatch="mark")
    assert marked["hash_ok"].tolist() == [t not in (2, 10) for t in ORDER]
    assert "hash_ok" not in frame.columns  # the input frame is not modified
    with pytest.raises(HandlerError, match="tid\\(s\\) 2, 10"):
        verify_hash(frame)


def test_verify_hash_declares_a_fail_fast_hook_only_when_failing() -> None:
    assert len(resolve_handler("verify_hash").result_hooks()) == 1
    marking = resolve_handler({"name": "verify_hash", "options": {"on_mismatch": "mark"}})
    assert marking.result_hooks() == []
    # fresh objects per stream: pluggy refuses to register one object twice
    hooks = resolve_handler("verify_hash")
    assert hooks.result_hooks()[0] is not hooks.result_hooks()[0]


# --- pipelines ---------------------------------------------------------------------


def test_pipeline_filter_then_frame(many_results: Any) -> None:
    pipeline = resolve_handler(
        [{"name": "rc_filter", "options": {"keep": "failures"}}, "dataframe"]
    )
    frame = pipeline.apply(json_round_trip(many_results))
    assert frame["tid"].tolist() == [4, 9, 13]
    assert isinstance(frame.index, pd.RangeIndex)


def test_pipeline_mark_hashes_then_frame_then_filter(many_results: Any) -> None:
    pipeline = resolve_handler(
        [
            {"name": "verify_hash", "options": {"on_mismatch": "mark"}},
            "dataframe",
            {"name": "rc_filter", "options": {"accept": [0, 1], "keep": "successes"}},
        ]
    )
    assert pipeline.accepted_rcs == frozenset({0, 1})
    frame = pipeline.apply(tampered(many_results))
    assert frame["tid"].tolist() == [t for t in ORDER if t != 9]
    assert not frame.loc[frame["tid"] == 10, "hash_ok"].item()
    assert frame.loc[frame["tid"] == 11, "hash_ok"].item()


def test_pipeline_error_names_the_step_and_its_input(many_results: Any) -> None:
    pipeline = resolve_handler([lambda raw: "a string, not results", "sorted"])
    with pytest.raises(HandlerError) as caught:
        pipeline.apply(many_results)
    message = str(caught.value)
    assert "step 2 of 2 ('sorted')" in message
    assert "a value of type str from step 1 ('<lambda>')" in message


def test_pipeline_error_in_the_first_step_names_the_raw_results(many_results: Any) -> None:
    with pytest.raises(HandlerError, match=r"step 1 of 1 \('verify_hash'\).*from the raw results"):
        resolve_handler("verify_hash").apply(tampered(many_results))


def test_apply_accepts_a_stream_outcome(many_results: Any) -> None:
    from remsvc_core.commands import validate_commands
    from remsvc_core.results import CommandResult, StreamOutcome

    commands = validate_commands([f"echo {tid}" for tid in ORDER])
    outcome = StreamOutcome(
        commands=commands,
        results={tid: CommandResult(**many_results[tid]) for tid in ORDER},
    )
    assert resolve_handler(None).apply(outcome) == sorted_results(many_results)


def test_apply_does_not_modify_the_callers_results(many_results: Any) -> None:
    before = json.dumps(many_results, sort_keys=True)
    resolve_handler([{"name": "verify_hash", "options": {"on_mismatch": "mark"}}]).apply(
        many_results
    )
    assert json.dumps(many_results, sort_keys=True) == before


# --- written like plugins ------------------------------------------------------------


def test_builtins_import_nothing_private() -> None:
    """The built-ins are written like any plugin's handler, on the public API only
    (docs/plugin-authors.md), so each of them can serve as an example."""
    package = Path(remsvc_handlers.__file__).parent
    modules = sorted(package.glob("*.py"))
    assert len(modules) == 6
    for path in modules:
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                names = [node.module or ""] + [f"{node.module}.{a.name}" for a in node.names]
            else:
                continue
            private = [
                name
                for name in names
                if any(part.startswith("_") for part in name.split(".") if part != "__future__")
            ]
            assert not private, f"remsvc_handlers/{path.name} imports {private}"
