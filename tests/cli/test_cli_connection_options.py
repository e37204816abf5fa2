"""The server options of ``remsvc run/ping/status`` come from the table of connection
extras: each option sets what the same extra sets in a connection, and is documented."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest

from remsvc_core.cli.app import build_parser, main
from remsvc_core.cli.target import server_settings, settings_from_args
from remsvc_core.connection import settings_from_uri
from remsvc_core.settings import CONNECTION_EXTRAS, ConnectionExtra

OPTIONS = [extra for extra in CONNECTION_EXTRAS if extra.flag]
CLI_DOC = Path(__file__).resolve().parents[2] / "docs" / "cli.md"


def sample(extra: ConnectionExtra, pem: str) -> str:
    """A value to type for ``extra`` (a flag takes none)."""
    if extra.implies_tls:
        return "remsvc.example.com" if extra.name == "tls_server_name" else pem
    return {"max_receive_mb": "256", "keepalive_s": "30"}.get(extra.name, "")


def with_pair(extra: ConnectionExtra, pem: str) -> dict[str, str]:
    """Mutual TLS needs both halves: the other one, as extras."""
    pair = {"client_cert_path": "client_key_path", "client_key_path": "client_cert_path"}
    return {pair[extra.name]: pem} if extra.name in pair else {}


@pytest.fixture
def pem(tmp_path: Path) -> str:
    path = tmp_path / "file.pem"
    path.write_text("only existence is checked here")
    return str(path)


@pytest.mark.parametrize("extra", OPTIONS, ids=lambda e: e.flag)
def test_each_option_sets_what_its_connection_extra_sets(extra: ConnectionExtra, pem: str) -> None:
    value = sample(extra, pem)
    typed = [extra.flag] if extra.kind == "boolean" else [extra.flag, value]
    pair = with_pair(extra, pem)
    for name, other in pair.items():
        typed += [next(o.flag for o in OPTIONS if o.name == name), other]
    args = build_parser().parse_args(["run", "--target", "h:1", *typed, "echo"])

    from_option = settings_from_args(args)
    extras = {extra.name: value or "true", **pair}
    if extra.implies_tls:
        extras["use_ssl"] = "true"  # the CLI implies it; a connection says it
    query = "&".join(f"{name}={quote(v)}" for name, v in extras.items())
    from_extra = settings_from_uri(f"remsvc://h:1?{query}")

    assert getattr(from_option, extra.field) == getattr(from_extra, extra.field)
    assert from_option.channel_key() == from_extra.channel_key()


def test_options_win_over_the_conn_uri(pem: str) -> None:
    args = build_parser().parse_args(
        ["ping", "--conn", "remsvc://h:1?max_receive_mb=8", "--max-receive-mb", "16", "--tls"]
    )

    settings = settings_from_args(args)

    assert settings.max_receive_bytes == 16 << 20
    assert settings.use_tls


def test_the_embedded_server_gets_the_options_that_apply_to_it() -> None:
    args = build_parser().parse_args(["status", "--max-receive-mb", "3"])

    with server_settings(args) as settings:
        assert settings.max_receive_bytes == 3 << 20
        assert settings.target.startswith("127.0.0.1:")


def test_the_token_has_no_option(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["run", "--help"]) == 0
    help_text = capsys.readouterr().out

    assert "--bearer-token" not in help_text
    for extra in OPTIONS:
        assert extra.flag in help_text


def test_cli_doc_lists_every_option() -> None:
    table = [line for line in CLI_DOC.read_text(encoding="utf-8").splitlines() if line[:1] == "|"]
    rows = {flag for line in table for flag in re.findall(r"`(--[a-z-]+)", line)}

    missing: list[Any] = [extra.flag for extra in OPTIONS if extra.flag not in rows]
    assert not missing, f"docs/cli.md does not document {missing}"


def test_keepalive_option_on_a_real_run(run_cli: Any, server_process: Any) -> None:
    server = server_process()

    done = run_cli("run", "--target", server.target, "--keepalive-s", "10", "-o", "json", "echo up")

    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["results"][0]["out"] == "up\n"
