"""Third-party handlers installed as real distributions (a dist-info on PYTHONPATH):
listed by ``remsvc handlers``, used by ``--handler``, and failing without losing results."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest
from support.distributions import installed_distribution

RunCli = Callable[..., subprocess.CompletedProcess[str]]


@pytest.fixture
def plugin_path(tmp_path: Path) -> dict[str, str]:
    """A site directory holding the distribution ``acme-remsvc-handlers`` 0.3."""
    handlers = '''
        def outputs(results):
            """Just the stripped stdout of each command, in command order."""
            return [results[tid]["out"].strip() for tid in sorted(results, key=int)]

        def explode(results):
            """Always fails."""
            raise ValueError("boom from acme")
        '''
    return installed_distribution(
        tmp_path / "site",
        "acme-remsvc-handlers",
        "0.3",
        {"acme_handlers": handlers},
        "[remsvc.handlers]\n"
        "outputs = acme_handlers:outputs\n"
        "explode = acme_handlers:explode\n"
        "broken = acme_missing_module:handler\n",
    )


def test_installed_plugin_is_listed_and_a_broken_one_is_flagged(
    run_cli: RunCli, plugin_path: dict[str, str]
) -> None:
    proc = run_cli("handlers", "-o", "json", env_extra=plugin_path)
    assert proc.returncode == 1  # "broken" cannot be imported
    handlers = {h["name"]: h for h in json.loads(proc.stdout)}
    assert handlers["outputs"]["package"] == "acme-remsvc-handlers"
    assert handlers["outputs"]["version"] == "0.3"
    assert handlers["outputs"]["description"].startswith("Just the stripped stdout")
    assert "acme_missing_module" in handlers["broken"]["error"]
    assert "broken" in proc.stderr
    assert "sorted" in handlers


def test_plugin_handler_value_in_json_table_and_csv(
    run_cli: RunCli, plugin_path: dict[str, str]
) -> None:
    args = ["run", "--handler", "outputs", "echo one", "echo two"]
    document = json.loads(run_cli(*args, "-o", "json", env_extra=plugin_path).stdout)
    assert document["value"] == ["one", "two"]
    assert document["handlers"] == ["outputs"]
    table = run_cli(*args, "-o", "table", env_extra=plugin_path)
    assert table.returncode == 0, table.stderr
    assert table.stdout.splitlines() == ["value", "one", "two"]
    assert run_cli(*args, "-o", "csv", env_extra=plugin_path).stdout == "value\none\ntwo\n"


def test_failing_handler_exits_1_and_prints_the_raw_results(
    run_cli: RunCli, plugin_path: dict[str, str]
) -> None:
    proc = run_cli("run", "--handler", "explode", "-o", "json", "echo kept", env_extra=plugin_path)
    assert proc.returncode == 1
    document = json.loads(proc.stdout)
    assert document["results"][0]["out"] == "kept\n"
    assert "value" not in document  # no shaped value: the raw results stand in
    assert any("boom from acme" in problem for problem in document["problems"])
    assert "handler failed" in proc.stderr
    assert "Traceback" not in proc.stderr
