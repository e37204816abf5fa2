"""``remsvc plugins``, REMSVC_LOAD_PLUGINS and REMSVC_TRACE_PLUGINS, with real
distributions (a dist-info on PYTHONPATH) and the real command line in a subprocess."""

from __future__ import annotations

import json
import re
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest
from support.distributions import installed_distribution

RunCli = Callable[..., subprocess.CompletedProcess[str]]


PLUGINS = """
    from remsvc_core.hookspecs import hookimpl

    class Counter:
        @hookimpl
        def remsvc_result(self, result, stream):
            pass

        @hookimpl
        def remsvc_stream_finished(self, outcome, stream):
            pass

    class Starter:
        @hookimpl
        def remsvc_stream_started(self, stream):
            pass

    counter = Counter()
    starter = Starter()

    def strict(results):
        return sorted(results.values(), key=lambda row: row["tid"])

    strict.result_hook = Counter
    """


@pytest.fixture
def plugin_site(tmp_path: Path) -> dict[str, str]:
    """Two hook plugins and a handler with a fail-fast hook, as installed packages."""
    return installed_distribution(
        tmp_path / "site",
        "acme-watch",
        "2.1",
        {"acme_watch": PLUGINS},
        "[remsvc.plugins]\ncounter = acme_watch:counter\nstarter = acme_watch:starter\n\n"
        "[remsvc.handlers]\nstrict = acme_watch:strict\n",
    )


def listed(run_cli: RunCli, *args: str, env: dict[str, str]) -> list[dict[str, object]]:
    done = run_cli("plugins", "--json", *args, env_extra=env)
    assert done.returncode == 0, done.stderr
    rows: list[dict[str, object]] = json.loads(done.stdout)
    return rows


def test_plugins_lists_plugins_and_handlers_with_their_hooks(
    run_cli: RunCli, plugin_site: dict[str, str]
) -> None:
    rows = {(row["kind"], row["name"]): row for row in listed(run_cli, env=plugin_site)}

    assert set(rows) == {("plugin", "counter"), ("plugin", "starter"), ("handler", "strict")}
    counter = rows["plugin", "counter"]
    assert (counter["package"], counter["version"]) == ("acme-watch", "2.1")
    assert counter["hooks"] == ["remsvc_result", "remsvc_stream_finished"]
    assert rows["plugin", "starter"]["hooks"] == ["remsvc_stream_started"]
    assert rows["handler", "strict"]["hooks"] == ["remsvc_result", "remsvc_stream_finished"]


def test_plugins_all_adds_the_builtin_handlers(
    run_cli: RunCli, plugin_site: dict[str, str]
) -> None:
    names = {row["name"] for row in listed(run_cli, "--all", env=plugin_site)}
    table = run_cli("plugins", "--all", env_extra=plugin_site)

    assert {"sorted", "dataframe", "rc_filter", "verify_hash", "counter", "strict"} <= names
    assert table.returncode == 0
    assert "verify_hash" in table.stdout
    assert "remsvc_result" in table.stdout


def test_load_plugins_is_an_allow_list(run_cli: RunCli, plugin_site: dict[str, str]) -> None:
    env = {**plugin_site, "REMSVC_LOAD_PLUGINS": "starter"}

    rows = {row["name"]: row for row in listed(run_cli, env=env) if row["kind"] == "plugin"}

    assert rows["starter"]["loaded"] is True
    assert rows["counter"]["loaded"] is False
    assert rows["counter"]["hooks"] == []


def test_trace_plugins_logs_each_hook_call(run_cli: RunCli, plugin_site: dict[str, str]) -> None:
    env = {**plugin_site, "REMSVC_TRACE_PLUGINS": "1"}

    done = run_cli("--debug", "run", "--output", "json", "echo traced", env_extra=env)

    assert done.returncode == 0, done.stderr
    assert re.search(r"remsvc hook remsvc_stream_started: starter in [0-9.]+ ms", done.stderr)
    assert re.search(
        r"remsvc hook remsvc_result tid 1: [^\n]*counter[^\n]* in [0-9.]+ ms", done.stderr
    )
    quiet = run_cli("--debug", "run", "--output", "json", "echo quiet", env_extra=plugin_site)
    assert "remsvc hook" not in quiet.stderr


def test_new_handler_scaffold_names_its_entry_point(run_cli: RunCli, tmp_path: Path) -> None:
    done = run_cli("new-handler", "failures_only", "--directory", str(tmp_path))
    again = run_cli("new-handler", "failures_only", "--directory", str(tmp_path))
    bad = run_cli("new-handler", "Failures-Only", "--directory", str(tmp_path))

    root = tmp_path / "remsvc-failures-only"
    assert done.returncode == 0, done.stderr
    pyproject = (root / "pyproject.toml").read_text(encoding="utf-8")
    assert 'failures_only = "remsvc_failures_only.handler:failures_only"' in pyproject
    assert (root / "tests" / "test_failures_only.py").is_file()
    assert "remsvc_server" in (root / "tests" / "test_failures_only.py").read_text()
    assert again.returncode == 2
    assert "already exists" in again.stderr
    assert bad.returncode == 2
    assert "snake_case" in bad.stderr
