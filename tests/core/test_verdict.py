"""One verdict for every front end: which tids failed, which are missing, how it ended."""

from __future__ import annotations

from remsvc_core.commands import validate_commands
from remsvc_core.results import CommandResult, StreamOutcome
from remsvc_core.verdict import judge, listed


def _outcome(rcs: dict[int, int], *, status: str = "OK", details: str = "") -> StreamOutcome:
    commands = validate_commands([f"cmd {n}" for n in range(1, 6)])
    results = {
        tid: CommandResult(tid, rc, "", f"err {tid}", commands[tid - 1].hsh, f"cmd {tid}")
        for tid, rc in rcs.items()
    }
    return StreamOutcome(
        commands=commands,
        results=results,
        status_code=status,
        status_details=details,
        target="db1:50051",
    )


def test_a_clean_run_is_ok() -> None:
    verdict = judge(_outcome({1: 0, 2: 0, 3: 0, 4: 0, 5: 0}))
    assert verdict.ok
    assert verdict.stream_ok
    assert verdict.failed_tids == []
    assert verdict.stream_problems() == []


def test_exit_codes_are_judged_against_the_accepted_set_in_tid_order() -> None:
    outcome = _outcome({5: 1, 1: 0, 3: 2, 2: 1, 4: 0})
    assert judge(outcome).failed_tids == [2, 3, 5]
    assert judge(outcome, {0, 1}).failed_tids == [3]
    assert not judge(outcome).ok
    assert judge(outcome).stream_ok  # exit codes aside, the stream was fine


def test_missing_results_and_the_status_fail_the_run_and_keep_the_rest() -> None:
    verdict = judge(_outcome({1: 0, 2: 0}, status="UNAVAILABLE", details="Socket closed"))
    assert not verdict.ok
    assert verdict.missing_tids == (3, 4, 5)
    assert verdict.connection_failed
    assert verdict.stream_problems() == [
        "stream ended with UNAVAILABLE: Socket closed",
        "no result for tid(s) 3, 4, 5",
        "2 of 5 result(s) arrived and are kept",
    ]
    assert _outcome({1: 0}).describe_failure() == "; ".join(
        judge(_outcome({1: 0})).stream_problems()
    )


def test_a_handler_error_fails_an_otherwise_clean_run() -> None:
    verdict = judge(_outcome({1: 0, 2: 0, 3: 0, 4: 0, 5: 0})).with_handler_error("boom")
    assert not verdict.ok
    assert verdict.handler_error == "boom"


def test_long_lists_say_how_many_more() -> None:
    assert listed([1, 2, 3]) == "1, 2, 3"
    assert listed(list(range(1, 26))) == ", ".join(map(str, range(1, 21))) + " and 5 more"
    assert listed(["a", "b", "c"], 2, "failed command(s)") == "a, b and 1 more failed command(s)"
