"""Usage errors: one clear line on stderr, exit 2, no traceback, nothing sent."""

from __future__ import annotations

from pathlib import Path

import pytest

from remsvc_core import __version__
from remsvc_core.cli import main
from remsvc_core.cli.exit_codes import UsageError

TOKEN = "tok-3c1f9a-never-print-me"


def _error_line(capsys: pytest.CaptureFixture[str]) -> str:
    captured = capsys.readouterr()
    assert captured.out == ""
    assert "Traceback" not in captured.err
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1, captured.err
    return lines[0]


@pytest.mark.parametrize(
    ("argv", "fragments"),
    [
        (["run"], ["no commands given", "--file"]),
        (["run", "--handler", "nosuch", "echo"], ["nosuch", "dataframe", "rc_filter"]),
        (["run", "--handler-options", "{}", "echo"], ["must follow the --handler"]),
        (["run", "--handler", "rc_filter", "--handler-options", "[1]", "echo"], ["JSON object"]),
        (
            ["run", "--handler", "rc_filter", "--handler-options", "{bad", "echo"],
            ["not valid JSON"],
        ),
        (
            ["run", "--handler", "rc_filter", "--handler-options", '{"accept": []}', "echo"],
            ["accept"],
        ),
        (["run", "--tls", "echo"], ["--tls needs a server", "--target"]),
        (["run", "--token-file", "/x", "echo"], ["--token-file needs a server"]),
        (["run", "--target", "h:1", "--metadata", "novalue", "echo"], ["KEY=VALUE"]),
        (
            ["run", "--target", "h:1", "--metadata", "Authorization=Bearer x", "echo"],
            ["--token-file"],
        ),
        (["run", "--target", "::1", "echo"], ["brackets"]),
        (["run", "--target", "h:99999", "echo"], ["invalid port"]),
        (["run", "--conn", "http://h:1", "echo"], ["remsvc://"]),
        (["run", "--conn", "remsvc://h:1?use_ssl=maybe", "echo"], ["use_ssl"]),
        (["run", "--conn", "remsvc://h:1?colour=blue", "echo"], ["colour", "known settings"]),
        (["run", "--target", "h:1", "--ca-cert", "/no/such/ca.pem", "echo"], ["ca_cert_path"]),
        (["run", "--target", "h:1", "--client-cert", "/etc/hostname", "echo"], ["both"]),
        (["run", "--target", "h:1", "--token-env", "REMSVC_TEST_UNSET", "echo"], ["not set"]),
        (
            ["run", "--target", "h:1", "--keepalive-s", "5", "echo"],
            ["--keepalive-s must be a whole number of seconds from 10", "abuse"],
        ),
        (["run", "--timeout", "0", "echo"], ["--timeout"]),
        (["run", "--cmdtyp", "bash", "echo"], ["bash", "powershell"]),
        (["run", "--output", "xml", "echo"], ["invalid choice"]),
        (["run", "--target", "h:1", "--conn", "remsvc://h:1", "echo"], ["not allowed with"]),
        (["nosuch"], ["invalid choice"]),
        (["serve", "--port", "x"], ["--port", "'x' is not a whole number from 0 to 65535"]),
        (["serve", "--log-level", "loud"], ["--log-level", "unknown level 'loud'"]),
        (["ping", "--count", "0"], ["--count"]),
    ],
)
def test_bad_arguments_exit_2_with_one_line(
    argv: list[str], fragments: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(argv) == 2
    line = _error_line(capsys)
    assert line.startswith("remsvc")
    for fragment in fragments:
        assert fragment in line


def test_token_in_the_conn_uri_is_refused_without_echoing_it(
    capsys: pytest.CaptureFixture[str],
) -> None:
    uri = f"remsvc://h:1?bearer_token={TOKEN}"
    assert main(["run", "--conn", uri, "echo"]) == 2
    line = _error_line(capsys)
    assert "bearer_token" in line
    assert "--token-file" in line
    assert "--token-env" in line
    assert TOKEN not in line
    nested = 'remsvc://h:1?__extra__={"bearer_token": "' + TOKEN + '"}'
    assert main(["ping", "--conn", nested]) == 2
    line = _error_line(capsys)
    assert "bearer_token" in line
    assert TOKEN not in line


def test_empty_and_missing_token_files(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    empty = tmp_path / "token"
    empty.write_text("\n", encoding="utf-8")
    assert main(["run", "--target", "h:1", "--token-file", str(empty), "echo"]) == 2
    assert "is empty" in _error_line(capsys)
    assert main(["run", "--target", "h:1", "--token-file", str(tmp_path / "none"), "echo"]) == 2
    assert "cannot read --token-file" in _error_line(capsys)


def test_serve_with_a_bad_config_names_file_and_key(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "server.ini"
    config.write_text("[server]\nport = many\n", encoding="utf-8")
    assert main(["serve", "--config", str(config)]) == 2
    line = _error_line(capsys)
    assert str(config) in line
    assert "port" in line
    assert main(["serve", "--config", str(tmp_path / "missing.ini")]) == 2
    assert "missing.ini" in _error_line(capsys)


def test_debug_shows_the_traceback() -> None:
    with pytest.raises(UsageError, match="no commands given"):
        main(["--debug", "run"])
    with pytest.raises(UsageError, match="no commands given"):
        main(["run", "--debug"])


def test_version_and_help(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--version"]) == 0
    assert capsys.readouterr().out.strip() == f"remsvc {__version__}"
    assert main(["run", "--help"]) == 0
    help_text = capsys.readouterr().out
    for documented in ("exit status:", "--handler-options", "--token-file", "--file", "json"):
        assert documented in help_text
