"""The built-in handlers on real results: commands run by the reference server,
streamed back by the engine over a real gRPC channel on loopback."""

from __future__ import annotations

import json
from typing import Any

import pandas as pd
import pytest

from remsvc_core.engine import run_commands_sync
from remsvc_core.errors import HandlerError, StopStream
from remsvc_core.handlers import resolve_handler
from remsvc_core.hashing import command_hash
from remsvc_core.hookspecs import StreamInfo
from remsvc_core.plugins import StreamHooks
from remsvc_core.results import CommandResult, StreamOutcome
from remsvc_core.server.config import ServerConfig
from remsvc_core.server.embedded import EmbeddedServer

# 14 commands. tid 1 is slow and the server runs 4 at a time, so the responses do
# not arrive in command order; tids 10..14 make string-key sorting go wrong.
COMMANDS = [
    "sleep 0.5; echo first",  # 1
    "echo two",  # 2
    "true",  # 3  empty stdout and stderr
    "exit 3",  # 4  non-zero, no output
    "echo to-stderr >&2; exit 2",  # 5
    "printf ''",  # 6  empty output
    "grep -q no-such-text /dev/null",  # 7  grep's "no match": rc 1
    "printf 'a\\nb\\n'",  # 8
    "echo nine",  # 9
    "echo ten",  # 10
    "false",  # 11 rc 1
    "printf 'caf\\303\\251\\n'",  # 12 non-ASCII text
    "echo thirteen",  # 13
    "echo fourteen",  # 14
]
EXPECTED_RC = {4: 3, 5: 2, 7: 1, 11: 1}
ORDER = list(range(1, len(COMMANDS) + 1))


@pytest.fixture(scope="module")
def outcome() -> StreamOutcome:
    with EmbeddedServer(ServerConfig(port=0, max_parallel=4)) as server:
        result = run_commands_sync(COMMANDS, server.settings(), stream_timeout=60)
    assert result.complete, result.describe_failure()
    return result


@pytest.fixture
def raw(outcome: StreamOutcome) -> dict[int, dict[str, Any]]:
    return outcome.raw_results()


@pytest.fixture
def raw_as_json(outcome: StreamOutcome) -> dict[str, dict[str, Any]]:
    """The raw mapping as a trigger event / XCom gives it back: tids as strings. It is
    built in reverse command order, so no handler gets command order for free (how
    far the real arrival order differs depends on the machine's load)."""
    backwards = {tid: outcome.results[tid].as_dict() for tid in reversed(ORDER)}
    return json.loads(json.dumps(backwards))


def tampered(raw_as_json: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Real results with two hashes altered after the fact. The real server always
    echoes the hash the engine sent, so a mismatch can only be made this way."""
    copy = json.loads(json.dumps(raw_as_json))
    copy["12"]["hsh"] = command_hash("something else")
    copy["3"]["hsh"] = ""
    return copy


def test_real_results_are_what_the_tests_assume(outcome: StreamOutcome) -> None:
    assert sorted(outcome.results) == ORDER
    for tid, result in outcome.results.items():
        assert result.rc == EXPECTED_RC.get(tid, 0), (tid, result)
    assert outcome.results[12].out == "café\n"
    assert outcome.results[5].err == "to-stderr\n"


def test_sorted_default_is_the_seed_output(raw: Any, raw_as_json: Any) -> None:
    pipeline = resolve_handler(None)
    from_ints = pipeline.apply(raw)
    from_strings = pipeline.apply(raw_as_json)
    assert from_strings == from_ints
    assert [row["tid"] for row in from_ints] == ORDER
    for row, cmd in zip(from_ints, COMMANDS, strict=True):
        assert list(row) == ["tid", "rc", "out", "err", "hsh", "cmd"]
        assert row["cmd"] == cmd
        assert row["hsh"] == command_hash(cmd)
    assert from_ints[2]["out"] == ""
    assert from_ints[5] == {
        "tid": 6,
        "rc": 0,
        "out": "",
        "err": "",
        "hsh": command_hash("printf ''"),
        "cmd": "printf ''",
    }


def test_dataframe_on_real_results(raw_as_json: Any) -> None:
    frame = resolve_handler("dataframe").apply(raw_as_json)
    assert list(frame.columns) == ["tid", "cmd", "rc", "out", "err", "hsh"]
    assert frame["tid"].tolist() == ORDER
    assert frame["cmd"].tolist() == COMMANDS
    assert frame["rc"].tolist() == [EXPECTED_RC.get(t, 0) for t in ORDER]
    assert (str(frame["tid"].dtype), str(frame["rc"].dtype)) == ("int64", "int64")
    assert all(isinstance(frame[c].dtype, pd.StringDtype) for c in ("cmd", "out", "err", "hsh"))
    assert isinstance(frame.index, pd.RangeIndex)
    assert frame.loc[2, "out"] == ""
    assert frame.loc[11, "out"] == "café\n"


def test_rc_filter_on_real_results(raw_as_json: Any) -> None:
    failures = resolve_handler({"name": "rc_filter", "options": {"keep": "failures"}})
    assert [r["tid"] for r in failures.apply(raw_as_json)] == [4, 5, 7, 11]
    assert failures.failed_tids(raw_as_json) == [4, 5, 7, 11]

    grep_ok = resolve_handler(
        {"name": "rc_filter", "options": {"accept": [0, 1], "keep": "failures"}}
    )
    assert grep_ok.accepted_rcs == frozenset({0, 1})
    assert [r["tid"] for r in grep_ok.apply(raw_as_json)] == [4, 5]
    assert grep_ok.failed_tids(raw_as_json) == [4, 5]
    assert grep_ok.is_success(raw_as_json["7"])

    only_three = resolve_handler({"name": "rc_filter", "options": {"keep": [3]}})
    assert [r["tid"] for r in only_three.apply(raw_as_json)] == [4]


def test_verify_hash_accepts_real_results(raw_as_json: Any, raw: Any) -> None:
    assert resolve_handler("verify_hash").apply(raw_as_json) == resolve_handler(None).apply(raw)


def test_verify_hash_catches_tampered_hashes(raw_as_json: Any) -> None:
    with pytest.raises(HandlerError) as caught:
        resolve_handler("verify_hash").apply(tampered(raw_as_json))
    assert "tid(s) 3, 12" in str(caught.value)

    marked = resolve_handler(
        [{"name": "verify_hash", "options": {"on_mismatch": "mark"}}, "dataframe"]
    ).apply(tampered(raw_as_json))
    assert marked.loc[~marked["hash_ok"], "tid"].tolist() == [3, 12]
    assert marked["hash_ok"].sum() == len(ORDER) - 2


def test_verify_hash_hook_passes_a_real_stream(remsvc_server: Any) -> None:
    pipeline = resolve_handler("verify_hash")
    outcome = run_commands_sync(
        COMMANDS[1:6], remsvc_server.settings(), hooks=pipeline.result_hooks()
    )
    assert outcome.complete, outcome.describe_failure()
    assert outcome.plugin_errors == []
    assert len(pipeline.apply(outcome.raw_results())) == 5


def test_verify_hash_hook_stops_on_a_tampered_result(outcome: StreamOutcome) -> None:
    # The hook is called the way the engine calls it (StreamHooks), with a real result
    # whose hash was altered: the real server cannot be made to echo a wrong hash
    # (see tampered()).
    hooks = StreamHooks(resolve_handler("verify_hash").result_hooks())
    stream = StreamInfo(stream_id="s", target="t", commands=tuple(outcome.commands))
    hooks.stream_started(stream)
    assert hooks.result(outcome.results[10], stream) is None
    good = outcome.results[10].to_json()
    bad = CommandResult.from_json({**good, "hsh": command_hash("echo eleven")})
    stop = hooks.result(bad, stream)
    assert stop is not None
    who, exc = stop
    assert who.startswith("plugin 'hooks[0]:HashCheck' (")
    assert isinstance(exc, StopStream)
    assert "tid 10 came back with hsh" in str(exc)
    assert hooks.errors == []


class WatchedBatch(tuple):  # type: ignore[type-arg]
    """A batch of commands that counts how often it is read."""

    reads = 0

    def __iter__(self) -> Any:
        WatchedBatch.reads += 1
        return super().__iter__()

    def __getitem__(self, index: Any) -> Any:
        WatchedBatch.reads += 1
        return super().__getitem__(index)


def test_verify_hash_hook_does_not_search_the_batch_per_result(outcome: StreamOutcome) -> None:
    """The fail-fast hook runs on the triggerer's event loop once per result, so its
    work per result must not grow with the batch: it used to search the commands for
    each result's tid (20,000 results kept the loop busy for about 20 s). Reading the
    batch once per stream, when it starts, would be fine; per result it must not."""
    hooks = StreamHooks(resolve_handler("verify_hash").result_hooks())
    batch = WatchedBatch(outcome.commands)
    stream = StreamInfo(stream_id="s", target="t", commands=batch)
    hooks.stream_started(stream)
    WatchedBatch.reads = 0
    for result in outcome.results.values():
        assert hooks.result(result, stream) is None
    assert len(outcome.results) == len(COMMANDS)
    assert WatchedBatch.reads == 0
    assert hooks.errors == []


def test_pipelines_on_real_results(raw_as_json: Any) -> None:
    frame = resolve_handler(
        [{"name": "rc_filter", "options": {"keep": "failures"}}, "dataframe"]
    ).apply(raw_as_json)
    assert frame["tid"].tolist() == [4, 5, 7, 11]
    assert frame["err"].tolist() == ["", "to-stderr\n", "", ""]

    mixed = resolve_handler(
        [
            {"name": "verify_hash", "options": {"on_mismatch": "mark"}},
            "dataframe",
            {"name": "rc_filter", "options": {"accept": [0, 1], "keep": "successes"}},
            "sorted",
        ]
    ).apply(tampered(raw_as_json))
    assert [r["tid"] for r in mixed] == [t for t in ORDER if t not in (4, 5)]
    assert [r["tid"] for r in mixed if not r["hash_ok"]] == [3, 12]
    assert all(type(r["rc"]) is int for r in mixed)


def test_results_of_a_stream_that_ended_early_are_shaped(remsvc_server_factory: Any) -> None:
    server = remsvc_server_factory(denylist=[("no-forbidden", "forbidden")])
    commands = ["echo 1", "exit 4", "echo forbidden", "echo never"]
    outcome = run_commands_sync(commands, server.settings(), stream_timeout=30)
    assert outcome.status_code == "PERMISSION_DENIED"
    assert outcome.missing_tids == [3, 4]
    pipeline = resolve_handler(["sorted", "dataframe"])
    frame = pipeline.apply(outcome.raw_results())
    assert frame["tid"].tolist() == [1, 2]
    assert pipeline.failed_tids(outcome.raw_results()) == [2]
