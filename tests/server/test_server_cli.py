"""The server's command line: one set of options for ``remsvc-server`` and ``remsvc serve``."""

from __future__ import annotations

import argparse
import re
import textwrap
from pathlib import Path

import grpc
import pytest
from support.server_process import run_stream

from remsvc_core import __version__
from remsvc_core.cli.app import build_parser as build_remsvc_parser, main as remsvc_main
from remsvc_core.errors import ServerConfigError
from remsvc_core.server.cli import build_parser, config_from_args, main
from remsvc_core.server.config import ServerConfig
from remsvc_core.server.config_keys import KEYS
from remsvc_core.wire import pb, pb_grpc

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
    after = DOCS_CLI.read_text(encoding="utf-8").split("## `remsvc serve` and `remsvc-server`")[1]
    section = after.split("\n## ")[0]
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


def test_tls_flags_make_a_tls_server_and_a_certificate_implies_tls(tls_files) -> None:
    explicit, _ = both(["--tls", "--cert", tls_files.server_cert, "--key", tls_files.server_key])
    implied, _ = both(["--cert", tls_files.server_cert, "--key", tls_files.server_key])
    pair = ["--cert", tls_files.server_cert, "--key", tls_files.server_key]
    mutual, _ = both([*pair, "--ca-cert", tls_files.ca_cert])
    assert config_from_args(explicit) == config_from_args(implied)
    assert config_from_args(implied).tls_enabled
    assert (config_from_args(mutual).tls_ca, config_from_args(mutual).identity_source) == (
        tls_files.ca_cert,
        "certificate",
    )
    alone, _ = both(["--tls"])
    with pytest.raises(ServerConfigError, match=r"\[tls\] cert: TLS is enabled but no cert"):
        config_from_args(alone)


def test_flags_reuse_the_files_tls_paths_even_when_the_file_left_tls_off(
    tmp_path: Path, tls_files
) -> None:
    ini = tmp_path / "server.ini"
    ini.write_text(
        f"[tls]\nenabled = false\ncert = {tls_files.server_cert}\nkey = {tls_files.server_key}\n",
        encoding="utf-8",
    )
    args, _ = both(["--config", str(ini), "--tls"])
    config = config_from_args(args)
    assert (config.tls_enabled, config.tls_cert) == (True, tls_files.server_cert)
    assert not config.notes  # nothing was ignored: --tls switched it on


def test_allow_and_deny_flags_add_to_the_files_lists(tmp_path: Path) -> None:
    ini = tmp_path / "server.ini"
    ini.write_text("[allowlist]\nup = ^uptime$\n[denylist]\nrm = rm\n", encoding="utf-8")
    argv = ["--config", str(ini), "--allow", r"^echo [a-z]+$", "--allow", "^df$"]
    args, serve_args = both([*argv, "--deny", "shutdown"])
    config = config_from_args(args)
    assert config == config_from_args(serve_args)
    assert config.allowlist == [
        ("--allow 1", r"^echo [a-z]+$"),
        ("--allow 2", "^df$"),
        ("up", "^uptime$"),
    ]
    assert config.denylist == [("--deny 1", "shutdown"), ("rm", "rm")]
    bad, _ = both(["--allow", r"(?=lookahead)"])
    with pytest.raises(ServerConfigError, match=r"\[allowlist\] --allow 1: uses lookaround"):
        config_from_args(bad)


@pytest.mark.parametrize("entry", ["remsvc-server", "remsvc serve"])
def test_version_prints_the_package_version(entry: str, capsys: pytest.CaptureFixture[str]) -> None:
    parse = main if entry == "remsvc-server" else build_remsvc_parser().parse_args
    argv = ["--version"] if entry == "remsvc-server" else ["serve", "--version"]
    with pytest.raises(SystemExit) as caught:
        parse(argv)
    assert caught.value.code == 0
    assert capsys.readouterr().out.strip().endswith(__version__)


def test_a_server_configured_by_flags_alone(server_process, tls_files) -> None:
    server = server_process(
        "",
        args=[
            *("--cert", tls_files.server_cert, "--key", tls_files.server_key),
            *("--allow", "^echo ", "--deny", "forbidden"),
        ],
    )
    credentials = grpc.ssl_channel_credentials(Path(tls_files.ca_cert).read_bytes())
    with grpc.secure_channel(f"localhost:{server.port}", credentials) as channel:
        stub = pb_grpc.RemSvcStub(channel)
        reply = stub.RemCmd(pb.RemCmdMsg(cmd="echo over tls", tid=1), timeout=10)
        refused = run_stream(stub, [pb.RemCmdMsg(cmd="echo forbidden", tid=1)])
        outside = run_stream(stub, [pb.RemCmdMsg(cmd="ls", tid=1)])
    assert reply.out == "over tls\n"
    assert (refused.code, refused.details) == (
        grpc.StatusCode.PERMISSION_DENIED,
        "command denied by denylist rule '--deny 1'",
    )
    assert outside.code == grpc.StatusCode.PERMISSION_DENIED
