"""The progress bar plugin, driven through a real pluggy PluginManager.

stderr is faked with a StringIO that claims to be a terminal; test_cli_run_embedded.py
checks the bar end to end with a pty.
"""

from __future__ import annotations

import io
from collections.abc import Mapping
from typing import Any

import pluggy

from remsvc_core import hookspecs
from remsvc_core.cli.progress import ProgressBar
from remsvc_core.commands import validate_commands
from remsvc_core.hookspecs import StreamInfo
from remsvc_core.results import CommandResult, StreamOutcome


class FakeTerminal(io.StringIO):
    def isatty(self) -> bool:
        return True


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def _manager(plugin: object) -> pluggy.PluginManager:
    manager = pluggy.PluginManager(hookspecs.PROJECT_NAME)
    manager.add_hookspecs(hookspecs)
    manager.register(plugin)  # validates the hookimpl signatures against the specs
    return manager


def _result(tid: int, rc: int) -> CommandResult:
    return CommandResult(tid=tid, rc=rc, out="", err="", hsh="", cmd=f"cmd {tid}")


def test_bar_counts_done_and_failures_and_clears_at_the_end() -> None:
    commands = validate_commands([f"echo {i}" for i in range(4)])
    stream = StreamInfo(stream_id="s1", target="t:1", commands=tuple(commands))
    terminal, clock = FakeTerminal(), Clock()
    bar = ProgressBar(4, terminal, min_interval=0.0, clock=clock)
    hook = _manager(bar).hook

    hook.remsvc_result(result=_result(2, 0), stream=stream)
    assert terminal.getvalue().endswith("] 1/4 done, 0 failed, 0:00")
    clock.now += 65
    hook.remsvc_result(result=_result(1, 3), stream=stream)
    hook.remsvc_result(result=_result(1, 3), stream=stream)  # a repeat counts once
    assert terminal.getvalue().endswith("] 2/4 done, 1 failed, 1:05")
    hook.remsvc_result(result=_result(3, 0), stream=stream)
    hook.remsvc_result(result=_result(4, 0), stream=stream)
    last_bar = terminal.getvalue().rsplit("\r", 1)[-1]
    assert "[" + "#" * 10 in last_bar
    assert "-]" not in last_bar
    assert last_bar.endswith("4/4 done, 1 failed, 1:05")

    outcome = StreamOutcome(commands=commands)
    hook.remsvc_stream_finished(outcome=outcome, stream=stream)
    assert terminal.getvalue().endswith("\r\x1b[K")  # the line is erased


def test_redraws_are_throttled_but_the_last_one_always_draws() -> None:
    terminal, clock = FakeTerminal(), Clock()
    bar = ProgressBar(50, terminal, min_interval=0.5, clock=clock)
    for tid in range(1, 51):
        clock.now += 0.01
        bar.remsvc_result(_result(tid, 0))
    draws = terminal.getvalue().count("\r")
    assert 1 <= draws <= 3
    assert terminal.getvalue().endswith("50/50 done, 0 failed, 0:00")


def test_success_follows_the_pipelines_accepted_codes() -> None:
    def accept_0_and_1(result: Mapping[str, Any]) -> bool:
        return result["rc"] in (0, 1)

    terminal = FakeTerminal()
    bar = ProgressBar(2, terminal, is_success=accept_0_and_1, min_interval=0.0)
    bar.remsvc_result(_result(1, 1))
    bar.remsvc_result(_result(2, 2))
    assert bar.failed == {2}
    assert terminal.getvalue().endswith("2/2 done, 1 failed, 0:00")


def test_a_broken_terminal_does_not_fail_the_run() -> None:
    terminal = FakeTerminal()
    terminal.close()
    bar = ProgressBar(1, terminal, min_interval=0.0)
    bar.remsvc_result(_result(1, 0))  # writing to a closed stream is swallowed
    assert bar.done == {1}


def _wait_for(condition: Any, timeout: float = 10.0) -> None:
    import time

    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "the ticker never redrew"
        time.sleep(0.01)


def test_the_bar_shows_before_the_first_result_ticks_and_names_the_running_command() -> None:
    """The issue's case: "sleep 1" "echo a" "echo b" "sleep 4", where the three quick
    results came within min_interval of a redraw and the bar froze at 1/4."""
    commands = validate_commands(["sleep 1", "echo a", "echo b", "sleep 4"])
    stream = StreamInfo(stream_id="s1", target="t:1", commands=tuple(commands))
    terminal, clock = FakeTerminal(), Clock()
    bar = ProgressBar(4, terminal, min_interval=0.5, tick=0.01, clock=clock)
    hook = _manager(bar).hook
    try:
        hook.remsvc_stream_started(stream=stream)
        assert terminal.getvalue().endswith("] 0/4 done, 0 failed, 0:00")
        assert "tid 1: sleep 1 [" in terminal.getvalue()

        clock.now += 1
        for tid in (1, 2, 3):  # within min_interval of each other: one draws, two wait
            hook.remsvc_result(result=_result(tid, 0), stream=stream)
        _wait_for(lambda: terminal.getvalue().endswith("3/4 done, 0 failed, 0:01"))
        assert terminal.getvalue().rsplit("\r", 1)[-1].startswith("\x1b[Ktid 4: sleep 4 [")

        clock.now += 3  # nothing arrives, the clock still moves
        _wait_for(lambda: terminal.getvalue().endswith("3/4 done, 0 failed, 0:04"))
    finally:
        hook.remsvc_stream_finished(outcome=StreamOutcome(commands=commands), stream=stream)
    assert terminal.getvalue().endswith("\r\x1b[K")
