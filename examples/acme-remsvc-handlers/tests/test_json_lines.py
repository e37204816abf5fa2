"""Tests for json_lines, against a real remsvc server from the ``remsvc_server`` fixture
(provided by remsvc's pytest plugin; no conftest needed)."""

from __future__ import annotations

from typing import Any

import pytest
from remsvc_core import resolve_handler, run_commands_sync
from remsvc_core.errors import HandlerError

from acme_remsvc_handlers.json_lines import json_lines, parse_lines

COMMANDS = [
    {"cmd": """printf '{"disk": "/", "used": 41}\\n{"disk": "/var", "used": 87}\\n'"""},
    {"cmd": "printf ''"},
    {"cmd": """printf '[1, 2]\\n\\n"three"\\n'"""},
]


def test_parse_lines_skips_blank_lines_and_reports_bad_ones() -> None:
    assert parse_lines('{"a": 1}\n\nnot json\n2\n') == ([{"a": 1}, 2], [3])


def test_json_lines_by_name_on_a_real_server(remsvc_server: Any) -> None:
    outcome = run_commands_sync(COMMANDS, remsvc_server.settings())
    assert outcome.complete, outcome.describe_failure()

    items = resolve_handler("json_lines").apply(outcome.raw_results())

    assert [item["tid"] for item in items] == [1, 2, 3]
    assert items[0]["records"] == [{"disk": "/", "used": 41}, {"disk": "/var", "used": 87}]
    assert items[1]["records"] == []
    assert items[2]["records"] == [[1, 2], "three"]
    assert all(item["bad_lines"] == [] for item in items)


def test_strict_fails_and_lenient_reports(remsvc_server: Any) -> None:
    outcome = run_commands_sync(["echo '{\"ok\": true}'", "echo oops"], remsvc_server.settings())
    raw = outcome.raw_results()

    with pytest.raises(HandlerError, match="tid 2"):
        json_lines(raw)
    lenient = resolve_handler({"name": "json_lines", "options": {"strict": False}}).apply(raw)
    assert [item["bad_lines"] for item in lenient] == [[], [1]]


def test_fail_fast_hook_stops_the_stream(remsvc_server: Any) -> None:
    pipeline = resolve_handler("json_lines")
    outcome = run_commands_sync(
        ["echo oops", "sleep 5", "echo '{}'"],
        remsvc_server.settings(),
        hooks=pipeline.result_hooks(),
    )
    assert outcome.status_code == "CANCELLED"
    assert "json_lines: tid 1" in outcome.status_details
    assert list(outcome.results) == [1]  # the bad result is kept; the rest never ran


def test_bad_option_fails_when_resolved() -> None:
    with pytest.raises(HandlerError, match="strict must be true or false"):
        resolve_handler({"name": "json_lines", "options": {"strict": "yes"}})
