"""Checks every fault test makes: nothing that arrived is lost, nothing ran twice.

"Arrived" is what a plugin saw through the public ``remsvc_result`` hook while the
stream ran, independent of the outcome object the engine builds at the end. A
result the hook saw must be in the outcome; every tid is either a result or missing;
and the execution log written by the commands themselves (on the server's side)
shows no tid twice.
"""

from __future__ import annotations

import socket
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

from reliability_figures import Figures

from remsvc_core.hookspecs import hookimpl
from remsvc_core.results import StreamOutcome

__all__ = [
    "Arrivals",
    "check_nothing_lost",
    "executions",
    "free_port",
    "reads_once",
    "recorded",
]


def recorded(log: Path, tid: int, work: str = "") -> str:
    """A command that appends its tid to ``log`` first, then does ``work``, then echoes."""
    body = f"echo {tid} >> '{log}'"
    if work:
        body += f"; {work}"
    return f"{body}; echo result-{tid}"


def executions(log: Path) -> Counter[int]:
    """How many times each tid ran, from the commands' own log."""
    if not log.exists():
        return Counter()
    return Counter(int(word) for word in log.read_text().split())


class Arrivals:
    """A plugin that notes each result as it arrives and can fire a fault at tid ``at``."""

    def __init__(self, at: int | None = None, action: Callable[[], Any] | None = None) -> None:
        self.at = at
        self.action = action
        self.tids: list[int] = []
        self.unexpected: list[tuple[str, int]] = []
        self.fired = False

    @hookimpl
    def remsvc_result(self, result: Any) -> None:
        self.tids.append(result.tid)
        if self.action is not None and result.tid == self.at and not self.fired:
            self.fired = True
            self.action()

    @hookimpl
    def remsvc_unexpected_response(self, response: Any) -> None:
        self.unexpected.append((response.reason, response.tid))


def check_nothing_lost(
    outcome: StreamOutcome,
    arrivals: Arrivals,
    figures: Figures,
    *,
    log: Path | None = None,
) -> None:
    """Assert the outcome keeps every arrived result and accounts for every tid."""
    asked = [command.tid for command in outcome.commands]
    lost = sorted(set(arrivals.tids) - set(outcome.results))
    figures.lost(len(set(arrivals.tids)), len(lost))
    assert not lost, f"results seen by the hook but missing from the outcome: {lost}"
    assert sorted(set(outcome.results) | set(outcome.missing_tids)) == sorted(asked)
    assert not set(outcome.results) & set(outcome.missing_tids)
    if outcome.missing_tids:
        failure = outcome.describe_failure()
        assert "no result for tid(s)" in failure, failure
        assert str(outcome.missing_tids[0]) in failure, failure
    if log is not None:
        ran = executions(log)
        twice = sorted(tid for tid, count in ran.items() if count > 1)
        figures.executions(sum(ran.values()), len(twice))
        assert not twice, f"tids executed more than once: {twice} ({ran})"
        assert set(ran) <= set(asked), f"the log names tids never asked for: {sorted(ran)}"
        # Every result that came back was produced by exactly one run of its command.
        assert set(outcome.results) <= set(ran), (sorted(outcome.results), sorted(ran))


def free_port() -> int:
    """A loopback port nobody listens on right now (bound, read, released)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def reads_once(server: Any, figures: Figures) -> list[int]:
    """The tids a (misbehaving) test server read, asserting none was sent twice."""
    read: list[int] = server.tids_read()
    twice = sorted(tid for tid, count in Counter(read).items() if count > 1)
    figures.executions(len(read), len(twice))
    assert not twice, f"commands sent more than once: {twice} ({read})"
    return read
