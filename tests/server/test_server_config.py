"""The INI configuration: every section, $VAR expansion, and errors naming file/section/key."""

from __future__ import annotations

import os
import textwrap
from pathlib import Path

import grpc
import pytest
from server_waits import wait_for_text
from support.server_process import ServerStartError

from remsvc_core.errors import ServerConfigError
from remsvc_core.server.config import ServerConfig, is_loopback_host, load_config, parse_config
from remsvc_core.server.config_keys import KEYS
from remsvc_core.server.config_kinds import Integer
from remsvc_core.server.policy import CommandPolicy
from remsvc_core.wire import pb, pb_grpc


def write(tmp_path: Path, text: str, name: str = "remsvc.ini") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def test_defaults_are_the_safe_ones():
    config = ServerConfig()
    assert (config.host, config.port, config.cmd_timeout_ms) == ("127.0.0.1", 50051, 30_000)
    assert (config.max_parallel, config.output_cap_bytes, config.drain_grace_s) == (1, 262_144, 5.0)
    assert (config.tls_enabled, config.auth, config.allow_insecure_auth) == (False, {}, False)
    assert parse_config("") == config


def test_every_section_is_read(tmp_path, tls_files):
    path = write(
        tmp_path,
        f"""
        [server]
        host = ::1
        port = 6000
        cmd_timeout_ms = 1500
        max_parallel = 4
        output_cap_bytes = 1048576
        allow_insecure_auth = yes
        drain_grace_ms = 2500

        [tls]
        enabled = true
        cert = {tls_files.server_cert}
        key = {tls_files.server_key}
        ca = {tls_files.ca_cert}

        [auth]
        Alice = tok-a
        bob = tok-b

        [allowlist]
        20_ls = ^ls
        10_echo = ^echo

        [denylist]
        b = rm
        a = shutdown

        [log]
        file = {tmp_path}/server.log
        level = warn
        """,
    )
    config = load_config(path)
    assert (config.host, config.port, config.cmd_timeout_ms, config.max_parallel) == (
        "::1",
        6000,
        1500,
        4,
    )
    assert (config.output_cap_bytes, config.allow_insecure_auth, config.drain_grace_s) == (
        1048576,
        True,
        2.5,
    )
    assert (config.tls_enabled, config.tls_cert, config.tls_key, config.tls_ca) == (
        True,
        tls_files.server_cert,
        tls_files.server_key,
        tls_files.ca_cert,
    )
    assert config.auth == {"Alice": "tok-a", "bob": "tok-b"}  # identities keep their case
    assert config.allowlist == [("10_echo", "^echo"), ("20_ls", "^ls")]  # sorted by label
    assert config.denylist == [("a", "shutdown"), ("b", "rm")]
    assert (config.log_file, config.log_level) == (f"{tmp_path}/server.log", "WARN")
    assert config.source == str(path)


def test_tokens_never_show_in_repr():
    config = parse_config("[auth]\nci = super-secret-token\n")
    assert "super-secret-token" not in repr(config)
    assert config.identities == ["ci"]


def test_env_vars_are_expanded_in_settings_and_tokens(tmp_path):
    env = {"PORT": "7001", "TOKEN": "from-env", "LOGDIR": str(tmp_path), "WORD": "reboot"}
    config = parse_config(
        textwrap.dedent(
            """
            [server]
            port = $PORT
            [auth]
            ci = ${TOKEN}
            [denylist]
            price = costs $$5
            anchored = ^uptime$
            [log]
            file = $LOGDIR/x.log
            """
        ),
        env=env,
    )
    assert config.port == 7001
    assert config.auth == {"ci": "from-env"}
    # Patterns are never expanded: they reach the regular-expression engine as written.
    assert config.denylist == [("anchored", "^uptime$"), ("price", "costs $$5")]
    assert config.log_file == f"{tmp_path}/x.log"
    assert config.hidden_env == frozenset({"TOKEN"})


def test_an_upstream_style_ini_file_starts_our_server_unchanged(server_process, tmp_path):
    # The layout upstream deployments use: empty sections, TLS paths left in while TLS
    # is off, spdlog-style level names, environment variables.
    upstream_ini = textwrap.dedent(
        """
        ; remsvc.ini as deployed with the C++ server
        [server]
        port = 50051
        cmd_timeout_ms = 30000

        [tls]
        enabled = false
        cert = /etc/remsvc/server.crt
        key = /etc/remsvc/server.key
        ca =

        [auth]

        [allowlist]

        [denylist]
        ; upstream reads \\\\ as one backslash, as its own tests write patterns
        01_wipe = rm\\\\s+-rf\\\\s+/$

        [log]
        file = ${REMSVC_LOG_DIR}/remsvc.log
        level = info                    ; trace|debug|info|warn|error
        debug_level = -1                ; -1 = off
        """
    )
    server = server_process(upstream_ini, env={"REMSVC_LOG_DIR": str(tmp_path)})
    with grpc.insecure_channel(server.target) as channel:
        stub = pb_grpc.RemSvcStub(channel)
        reply = stub.RemCmd(pb.RemCmdMsg(cmd="echo up", tid=1), timeout=10)
        with pytest.raises(grpc.RpcError) as denied:
            stub.RemCmd(pb.RemCmdMsg(cmd="rm -rf /", tid=2), timeout=10)
    assert (reply.rc, reply.out) == (0, "up\n")
    assert denied.value.code() == grpc.StatusCode.PERMISSION_DENIED
    log_file = tmp_path / "remsvc.log"
    line = "identity=anonymous src='' tid=1 rc=0"
    assert line in wait_for_text(log_file.read_text, line)


def test_env_expanded_token_works_and_is_hidden_from_commands(server_process):
    env = {"CI_TOKEN": "expanded-token", "CI_COLOUR": "blue"}
    server = server_process("[auth]\nci = ${CI_TOKEN}\n", env=env)
    good = [("authorization", "Bearer expanded-token")]
    with grpc.insecure_channel(server.target) as channel:
        stub = pb_grpc.RemSvcStub(channel)
        assert stub.Ping(pb.PingMsg(seq=2), metadata=good, timeout=10).seq == 2
        literal = [("authorization", "Bearer ${CI_TOKEN}")]
        with pytest.raises(grpc.RpcError) as caught:
            stub.Ping(pb.PingMsg(seq=2), metadata=literal, timeout=10)
        printed = stub.RemCmd(pb.RemCmdMsg(cmd="env", tid=1), metadata=good, timeout=10).out
        as_user = stub.RemCmd(
            pb.RemCmdMsg(cmd="env", cmdusr="nobody", tid=2), metadata=good, timeout=10
        )
    assert caught.value.code() == grpc.StatusCode.UNAUTHENTICATED
    # The variable that carried a token is not passed on to commands; others are.
    assert "CI_COLOUR=blue" in printed
    assert "expanded-token" not in printed
    assert "CI_TOKEN" not in printed
    if os.geteuid() == 0:
        assert as_user.rc == 0
        assert "CI_COLOUR=blue" in as_user.out
        assert "expanded-token" not in as_user.out


BAD_VALUES = [
    ("[server]\nport = fifty\n", "[server] port"),
    ("[server]\nport = 70000\n", "[server] port"),
    ("[server]\nport = -1\n", "[server] port"),
    ("[server]\nhost =\n", "[server] host"),
    ("[server]\ncmd_timeout_ms = 0\n", "[server] cmd_timeout_ms"),
    ("[server]\ncmd_timeout_ms = 1.5\n", "[server] cmd_timeout_ms"),
    ("[server]\nmax_parallel = 0\n", "[server] max_parallel"),
    ("[server]\noutput_cap_bytes = none\n", "[server] output_cap_bytes"),
    ("[server]\ndrain_grace_ms = -5\n", "[server] drain_grace_ms"),
    ("[server]\nallow_insecure_auth = maybe\n", "[server] allow_insecure_auth"),
    ("[server]\nPort = x\n", "[server] Port: write port"),
    ("[server]\nport = 1\nport = 2\n", "[server] port: given twice"),
    (
        "[server]\ncmd_timeout_ms = $NOT_SET_ANYWHERE\n",
        "[server] cmd_timeout_ms: environment variable NOT_SET_ANYWHERE",
    ),
    ("[tls]\nenabled = sometimes\n", "[tls] enabled"),
    ("[tls]\nenabled = true\n", "[tls] cert"),
    (
        "[tls]\nenabled = true\ncert = /nonexistent/cert.pem\nkey = /nonexistent/key.pem\n",
        "[tls] cert",
    ),
    ("[auth]\nalice =\n", "[auth] alice: empty token"),
    ("[auth]\nalice = same\nbob = same\n", "[auth] bob: same token as identity 'alice'"),
    ("[auth]\nci = ${}\n", "[auth] ci"),
    ("[log]\nlevel = loud\n", "[log] level"),
    ("port = 1\n", "line 1"),
]


@pytest.mark.parametrize(("text", "expected"), BAD_VALUES, ids=[e for _, e in BAD_VALUES])
def test_invalid_values_name_file_section_and_key(tmp_path, text, expected):
    path = write(tmp_path, text, name="bad.ini")
    with pytest.raises(ServerConfigError) as caught:
        load_config(path, env={})
    message = str(caught.value)
    assert message.startswith(f"{path}: ")
    assert expected in message


def test_tls_files_must_be_pem(tmp_path, tls_files):
    garbage = tmp_path / "garbage.pem"
    garbage.write_text("not a key")
    text = f"[tls]\nenabled = true\ncert = {tls_files.server_cert}\nkey = {garbage}\n"
    with pytest.raises(ServerConfigError, match=r"\[tls\] key: .* is not a PEM private key"):
        parse_config(text, source="t.ini")


def test_a_token_in_a_bad_line_is_not_echoed(tmp_path):
    with pytest.raises(ServerConfigError) as caught:
        parse_config(
            "[auth]\nalice = secret-token-value\nbob = secret-token-value\n", source="t.ini"
        )
    assert "secret-token-value" not in str(caught.value)


def test_missing_file_is_a_clear_error(tmp_path):
    with pytest.raises(ServerConfigError, match="configuration file not found"):
        load_config(tmp_path / "nope.ini")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("[server]\nthreads = 8\n", "line 2: [server] threads: unknown key"),
        ("[metrics]\nport = 9\n", "line 1: unknown section [metrics] The sections are"),
        (
            "[server]\ncmd_timeout = 5\n",
            "[server] cmd_timeout: unknown key; did you mean cmd_timeout_ms?",
        ),
        ("[allow_list]\nx = ^ls$\n", "unknown section [allow_list]; did you mean [allowlist]?"),
        ("[Allowlist]\nx = ^ls$\n", "section [Allowlist]: write [allowlist]"),
        ("[auth ]\nci = tok\n", "section [auth ] has blanks inside the brackets; write [auth]"),
        ("[tls]\nport = 1\n", "[tls] port: port is a key of [server], not of [tls]"),
    ],
)
def test_unknown_sections_and_keys_are_errors_naming_the_intended_name(text, expected):
    with pytest.raises(ServerConfigError) as caught:
        parse_config(text, source="u.ini")
    assert str(caught.value).startswith("u.ini: ")
    assert expected in str(caught.value)


def test_tokens_without_tls_on_a_public_address_are_refused_unless_allowed():
    text = "[server]\nhost = 0.0.0.0\n[auth]\nci = tok\n"
    with pytest.raises(
        ServerConfigError, match=r"\[server\] host: refusing .* allow_insecure_auth"
    ):
        parse_config(text, source="p.ini")
    allowed = parse_config(
        "[server]\nhost = 0.0.0.0\nallow_insecure_auth = true\n[auth]\nci = tok\n"
    )
    assert allowed.allow_insecure_auth
    assert parse_config("[server]\nhost = 203.0.113.7\n").host == "203.0.113.7"  # no tokens: fine


def test_loopback_detection():
    assert all(is_loopback_host(h) for h in ("127.0.0.1", "127.3.4.5", "::1", "[::1]", "localhost"))
    assert not any(is_loopback_host(h) for h in ("0.0.0.0", "::", "198.51.100.1", "example.com"))


def test_replace_checks_names_and_values():
    with pytest.raises(ServerConfigError, match="unknown ServerConfig field"):
        ServerConfig().replace(prot=1)
    with pytest.raises(ServerConfigError, match=r"\[server\] max_parallel"):
        ServerConfig().replace(max_parallel=0)
    assert ServerConfig().replace(port=0).port == 0


def test_policy_checks_deny_first_then_allow():
    policy = CommandPolicy(allowlist=[("a", "^echo ")], denylist=[("d", "secret")])
    assert policy.check("echo hi").allowed
    assert not policy.check("echo secret").allowed
    assert not policy.check("ls").allowed
    assert CommandPolicy([], []).check("anything").allowed
    broken = CommandPolicy([], [("x", "(")])
    assert broken.deny_all
    assert not broken.check("echo hi").allowed


def test_cli_reports_a_config_error_naming_file_section_and_key(server_process):
    with pytest.raises(ServerStartError) as caught:
        server_process("[server]\ncmd_timeout_ms = soon\n")
    assert caught.value.returncode == 2
    assert (
        "server.ini: [server] cmd_timeout_ms: 'soon' is not a whole number" in caught.value.output
    )
    assert "Traceback" not in caught.value.output


INTEGER_KEYS = [key for key in KEYS if isinstance(key.kind, Integer)]


@pytest.mark.parametrize("key", INTEGER_KEYS, ids=[key.name for key in INTEGER_KEYS])
def test_a_range_is_one_rule_for_the_file_and_for_code(key):
    kind = key.kind
    assert isinstance(kind, Integer)
    outside = [kind.low - 1] + ([kind.high + 1] if kind.high is not None else [])
    for number in outside:
        with pytest.raises(ServerConfigError) as from_file:
            parse_config(f"[{key.section}]\n{key.name} = {number}\n", source="r.ini")
        with pytest.raises(ServerConfigError) as from_code:
            ServerConfig(source="code").replace(**{key.field: number})
        assert (
            str(from_file.value)
            == f"r.ini: [{key.section}] {key.name}: '{number}' is not {kind.expected}"
        )
        assert (
            str(from_code.value)
            == f"code: [{key.section}] {key.name}: {number} is not {kind.expected}"
        )
    edges = [kind.low] + ([kind.high] if kind.high is not None else [])
    for number in edges:
        assert (
            getattr(parse_config(f"[{key.section}]\n{key.name} = {number}\n"), key.field) == number
        )
        assert getattr(ServerConfig().replace(**{key.field: number}), key.field) == number


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        (
            {"drain_grace_s": -0.5},
            "[server] drain_grace_ms: -0.5 is not a number of seconds from 0 to 86400",
        ),
        (
            {"drain_grace_s": 86_400.5},
            "[server] drain_grace_ms: 86400.5 is not a number of seconds from 0 to 86400",
        ),
        ({"port": True}, "[server] port: True is not a whole number"),
        ({"allow_insecure_auth": "yes"}, "[server] allow_insecure_auth: 'yes' is not a boolean"),
        ({"tls_enabled": 1}, "[tls] enabled: 1 is not a boolean"),
        ({"host": " "}, "[server] host: empty; use a host name or address"),
        ({"log_level": "loud"}, "[log] level: unknown level 'loud'; use one of trace, debug"),
        ({"log_file": ""}, "[log] file: '' is not a file path"),
        ({"auth": {"ci": ""}}, "[auth] ci: empty token"),
        ({"auth": {"a": "t", "b": "t"}}, "[auth] b: same token as identity 'a'"),
        ({"tls_enabled": True}, "[tls] cert: TLS is enabled but no cert file is given"),
        ({"tls_ca": "/etc/hostname"}, "[tls] ca: a client CA (mutual TLS) needs enabled = true"),
    ],
)
def test_configs_built_in_code_are_checked_by_the_same_table(changes, expected):
    with pytest.raises(ServerConfigError) as caught:
        ServerConfig(source="code").replace(**changes)
    assert str(caught.value).startswith(f"code: {expected}")


def test_tls_files_given_in_code_must_be_pem_too(tmp_path, tls_files):
    garbage = tmp_path / "garbage.pem"
    garbage.write_text("not a certificate")
    config = ServerConfig(tls_enabled=True, tls_cert=str(garbage), tls_key=tls_files.server_key)
    with pytest.raises(ServerConfigError, match=r"\[tls\] cert: .* is not a PEM certificate"):
        config.validate()
    good = config.replace(tls_cert=tls_files.server_cert, tls_ca=tls_files.ca_cert)
    assert good.tls_ca == tls_files.ca_cert
