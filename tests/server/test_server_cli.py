"""The server's command line: one set of options for ``remsvc-server`` and ``remsvc serve``."""

from __future__ import annotations

import argparse
import re
import textwrap
from pathlib import Path

import pytest

from remsvc_core.cli.app import build_parser as build_remsvc_parser, main as remsvc_main
from remsvc_core.server.cli import build_parser, config_from_args, main
from remsvc_core.server.config import ServerConfig
from remsvc_core.server.config_keys import KEYS

DOCS_CLI = Path(__file__).resolve().parents[2] / "docs" / "cli.md"


def both(argv: list[str]) -> tuple[argparse.Namespace, argparse.Namespace]:
    """``argv`` read by remsvc-server's parser and by ``remsvc serve``'s."""
    return build_parser().parse_args(argv), build_remsvc_parser().parse_args(["serve", *argv])


def test_flags_win_over_the_file_the_same_way_in_both(tmp_path: Path) -> None:
    ini = tmp_path / "server.ini"
    ini.write_text(
        textwrap.dedent(
            """
            [server]
            host = ::1
            port = 6000
            cmd_timeout_ms = 1500
            max_parallel = 3
            [log]
            level = warn
            """
        ),
        encoding="utf-8",
    )
    log_file = tmp_path / "server.log"
    argv = ["--config", str(ini), "--port", "0", "--cmd-timeout-ms", "2500"]
    argv += ["--log-level", "debug", "--log-file", str(log_file), "--port-file", "p"]
    standalone, serve = both(argv)
    config = config_from_args(standalone)
    assert config == config_from_args(serve)
    assert (config.host, config.port, config.cmd_timeout_ms, config.max_parallel) == (
        "::1",
        0,
        2500,
        3,
    )
    assert (config.log_level, config.log_file) == ("DEBUG", str(log_file))
    assert config.source == str(ini)
    assert standalone.port_file == serve.port_file == "p"


def test_without_a_file_the_defaults_in_both() -> None:
    for args in both([]):
        assert config_from_args(args) == ServerConfig()
    for args in both(["--host", "127.0.0.2"]):
        assert config_from_args(args) == ServerConfig(host="127.0.0.2")


def test_every_flagged_key_has_its_option_and_its_rule(capsys: pytest.CaptureFixture[str]) -> None:
    flagged = [key for key in KEYS if key.flag]
    assert {"--host", "--port"} <= {key.flag for key in flagged}
    help_text = build_parser().format_help()
    for key in flagged:
        assert key.flag in help_text
        assert f"[{key.section}] {key.name}" in help_text
    with pytest.raises(SystemExit) as caught:
        build_parser().parse_args(["--cmd-timeout-ms", "0"])
    assert caught.value.code == 2
    expected = "argument --cmd-timeout-ms: '0' is not a whole number from 1 to 2147483647"
    assert expected in capsys.readouterr().err


def test_every_option_is_in_the_cli_docs() -> None:
    section = DOCS_CLI.read_text(encoding="utf-8").split("## `remsvc serve` and `remsvc-server`")[1]
    documented = set(re.findall(r"^\| `(--[a-z-]+)", section, flags=re.MULTILINE))
    options = set(re.findall(r"--[a-z-]+", build_parser().format_usage()))
    assert documented == options


@pytest.mark.parametrize("entry", ["remsvc-server", "remsvc serve"])
def test_a_flag_that_breaks_a_rule_of_the_file_exits_2_naming_the_file(
    entry: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ini = tmp_path / "server.ini"
    ini.write_text("[auth]\nci = a-token-never-shown\n", encoding="utf-8")
    argv = ["--config", str(ini), "--host", "192.0.2.10"]
    if entry == "remsvc-server":
        assert main(argv) == 2
        prefix = "remsvc-server: configuration error: "
    else:
        assert remsvc_main(["serve", *argv]) == 2
        prefix = "remsvc serve: configuration error: "
    err = capsys.readouterr().err
    assert err.startswith(f"{prefix}{ini}: [server] host: refusing to accept bearer tokens")
    assert "a-token-never-shown" not in err
