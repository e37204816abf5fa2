"""Per-identity policy: [identity NAME] sections, bound to tokens or client certificates.

Against real server processes: an identity's own allow and deny rules add to the
server-wide lists, its ``users`` line bounds ``cmdusr`` (an empty one is the
server's own user), refusals name the rule that decided; with mutual TLS and no
tokens the certificate's name selects the section. ``remsvc policy test`` says the
same without running anything.
"""

from __future__ import annotations

import textwrap
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest
import trustme
from server_waits import wait_for_text
from support.server_process import ServerStartError, launch_server, run_stream

from remsvc_core.cli.app import main as remsvc_main
from remsvc_core.errors import ServerConfigError
from remsvc_core.server.config import parse_config
from remsvc_core.server.policy import CommandPolicy, server_user
from remsvc_core.wire import pb, pb_grpc

OPS_TOKEN = "ops-t0ken-8c2d"
ANALYST_TOKEN = "analyst-t0ken-41fe"
OWN_USER = server_user()

POLICY_INI = textwrap.dedent(
    f"""\
    [auth]
    ops = {OPS_TOKEN}
    analysts = {ANALYST_TOKEN}

    [denylist]
    no_shutdown = shutdown

    [identity analysts]
    allow.uptime = ^uptime$
    allow.echo = ^echo [a-z]+$
    deny.secret = secret
    users = nobody {OWN_USER}
    """
)


def call(server, token: str, cmd: str, user: str = "") -> tuple[grpc.StatusCode, str]:
    with grpc.insecure_channel(server.target) as channel:
        run = run_stream(
            pb_grpc.RemSvcStub(channel),
            [pb.RemCmdMsg(cmd=cmd, cmdusr=user, tid=1)],
            metadata=[("authorization", f"Bearer {token}")],
        )
    return run.code, run.details


@pytest.fixture(scope="module")
def policy_server(tmp_path_factory):
    process = launch_server(tmp_path_factory.mktemp("identity-policy"), POLICY_INI)
    try:
        yield process
    finally:
        process.close()


@pytest.mark.parametrize(
    ("token", "cmd", "user", "rule"),
    [
        # the identity's allow list narrows what the server-wide lists let through
        (ANALYST_TOKEN, "uptime", "", None),
        (ANALYST_TOKEN, "echo hello", "", None),
        (ANALYST_TOKEN, "ls /", "", "command matches no allow rule of [identity analysts]"),
        (ANALYST_TOKEN, "echo secret", "", "command denied by [identity analysts] deny.secret"),
        # the server-wide deny list still applies to everyone
        (ANALYST_TOKEN, "echo shutdown", "", "command denied by denylist rule 'no_shutdown'"),
        (OPS_TOKEN, "echo shutdown", "", "command denied by denylist rule 'no_shutdown'"),
        # an identity without a section has the server-wide lists alone
        (OPS_TOKEN, "ls /", "", None),
        (OPS_TOKEN, "echo secret", "root", None),
        # users: the analysts may not run as anyone unlisted
        (ANALYST_TOKEN, "uptime", "daemon", "may not run commands as user 'daemon'"),
    ],
)
def test_an_identity_section_adds_to_the_server_wide_lists(policy_server, token, cmd, user, rule):
    code, details = call(policy_server, token, cmd, user)
    if rule is None:
        assert code == grpc.StatusCode.OK, details
    else:
        assert code == grpc.StatusCode.PERMISSION_DENIED
        assert rule in details


def test_an_empty_cmdusr_is_checked_as_the_servers_own_user(server_process):
    ini = POLICY_INI.replace(f"users = nobody {OWN_USER}", "users = nobody")
    server = server_process(ini)
    code, details = call(server, ANALYST_TOKEN, "uptime")
    assert code == grpc.StatusCode.PERMISSION_DENIED
    assert f"may not run commands as user {OWN_USER!r} (cmdusr empty" in details
    assert "[identity analysts] users: nobody" in details
    code, details = call(server, ANALYST_TOKEN, "uptime", "root")
    assert code == grpc.StatusCode.PERMISSION_DENIED
    assert "may not run commands as user 'root'; [identity analysts] users: nobody" in details
    code, _ = call(server, ANALYST_TOKEN, "uptime", "nobody")
    assert code == grpc.StatusCode.OK


def test_the_refusal_is_logged_with_the_identity(policy_server):
    call(policy_server, ANALYST_TOKEN, "cat /etc/hostname")
    log = wait_for_text(policy_server.log_text, "identity=analysts", "no allow rule")
    assert "refused tid=1 identity=analysts" in log
    assert ANALYST_TOKEN not in log


# -- mutual TLS: the certificate names the caller ------------------------------------------


@dataclass(frozen=True)
class CertificateSet:
    ca: str
    server_cert: str
    server_key: str
    clients: dict[str, tuple[str, str]]  # label -> (cert, key)


@pytest.fixture(scope="module")
def certificates(tmp_path_factory) -> CertificateSet:
    directory = tmp_path_factory.mktemp("mtls-identities")
    ca = trustme.CA()
    ca.cert_pem.write_to_path(str(directory / "ca.pem"))

    def issue(label: str, *names: str, common_name: str | None = None) -> tuple[str, str]:
        leaf = ca.issue_cert(*names, common_name=common_name)
        cert, key = directory / f"{label}.pem", directory / f"{label}.key"
        cert.write_bytes(b"".join(blob.bytes() for blob in leaf.cert_chain_pems))
        leaf.private_key_pem.write_to_path(str(key))
        key.chmod(0o600)
        return str(cert), str(key)

    server_cert, server_key = issue("server", "localhost", "127.0.0.1")
    return CertificateSet(
        ca=str(directory / "ca.pem"),
        server_cert=server_cert,
        server_key=server_key,
        clients={
            "cn": issue("airflow", "airflow.remsvc.test", common_name="airflow-prod"),
            "san-only": issue("batch", "batch.remsvc.test"),
        },
    )


def test_with_mutual_tls_the_certificate_names_the_identity(server_process, certificates):
    server = server_process(
        textwrap.dedent(
            f"""\
            [tls]
            enabled = true
            cert = {certificates.server_cert}
            key = {certificates.server_key}
            ca = {certificates.ca}

            [identity airflow-prod]
            allow.uptime = ^uptime$

            [identity batch.remsvc.test]
            deny.uptime = uptime
            """
        )
    )

    def run(client: str, cmd: str) -> tuple[grpc.StatusCode, str]:
        cert, key = certificates.clients[client]
        credentials = grpc.ssl_channel_credentials(
            root_certificates=Path(certificates.ca).read_bytes(),
            private_key=Path(key).read_bytes(),
            certificate_chain=Path(cert).read_bytes(),
        )
        with grpc.secure_channel(server.target, credentials) as channel:
            result = run_stream(pb_grpc.RemSvcStub(channel), [pb.RemCmdMsg(cmd=cmd, tid=1)])
        return result.code, result.details

    # The certificate with a common name is that name; one without, its first SAN.
    assert run("cn", "uptime")[0] == grpc.StatusCode.OK
    code, details = run("cn", "echo x")
    assert code == grpc.StatusCode.PERMISSION_DENIED
    assert "[identity airflow-prod]" in details
    assert run("san-only", "echo x")[0] == grpc.StatusCode.OK
    code, details = run("san-only", "uptime")
    assert code == grpc.StatusCode.PERMISSION_DENIED
    assert "command denied by [identity batch.remsvc.test] deny.uptime" in details
    log = wait_for_text(server.log_text, "identity=airflow-prod", "identity=batch.remsvc.test")
    assert "identity=airflow-prod" in log
    assert "identity=batch.remsvc.test" in log


# -- mistakes are startup errors -------------------------------------------------------


@pytest.mark.parametrize(
    ("section", "expected"),
    [
        (
            "[identity analyst]\nallow.x = ^x$\n",
            "[identity analyst]: no identity 'analyst' in [auth], so no caller can ever be it; "
            "did you mean [identity analysts]?",
        ),
        ("[identity analysts]\nallow_x = ^x$\n", "unknown key; did you mean allow.x?"),
        ("[identity analysts]\nuser = nobody\n", "unknown key; did you mean users?"),
        ("[identity analysts]\nallow.x = ^(a\n", "[identity analysts] allow.x: does not compile"),
        ("[identity analysts]\nusers =\n", "[identity analysts] users: no user names"),
        ("[identity analysts]\nmax_streams = 0\n", "[identity analysts] max_streams: '0' is not"),
        ("[identity]\nallow.x = ^x$\n", "section [identity] needs the identity's name"),
        ("[Identity analysts]\nallow.x = ^x$\n", "write [identity analysts]"),
    ],
)
def test_a_mistaken_identity_section_stops_the_server(server_process, section, expected):
    ini = f"[auth]\nanalysts = {ANALYST_TOKEN}\n{section}"
    with pytest.raises(ServerStartError) as caught:
        server_process(ini)
    assert caught.value.returncode == 2
    assert "remsvc-server: configuration error: " in caught.value.output
    assert expected in caught.value.output
    assert ANALYST_TOKEN not in caught.value.output


def test_without_tokens_or_certificates_only_anonymous_has_a_section():
    config = parse_config("[identity anonymous]\nallow.uptime = ^uptime$\n")
    assert not CommandPolicy.from_config(config).check("ls").allowed
    with pytest.raises(ServerConfigError, match="every caller is 'anonymous'"):
        parse_config("[identity ci]\nallow.uptime = ^uptime$\n", source="a.ini")


# -- remsvc policy test ----------------------------------------------------------------


@pytest.fixture
def policy_file(tmp_path: Path) -> Path:
    path = tmp_path / "server.ini"
    path.write_text(POLICY_INI, encoding="utf-8")
    return path


@pytest.mark.parametrize(
    ("argv", "status", "lines"),
    [
        (
            ["--as", "analysts", "uptime"],
            0,
            ["allowed", "rule:     [identity analysts] allow.uptime"],
        ),
        (["--as", "analysts", "ls"], 1, ["refused", "rule:     [identity analysts] allow.*"]),
        (["--as", "ops", "echo shutdown"], 1, ["refused", "rule:     [denylist] no_shutdown"]),
        (["--as", "ops", "ls"], 0, ["allowed", "rule:     (none: no rule refuses it)"]),
        (
            ["--as", "analysts", "--user", "daemon", "uptime"],
            1,
            ["refused", "rule:     [identity analysts] users", "user:     daemon"],
        ),
        (
            ["--as", "analysts", "--user", "nobody", "uptime"],
            0,
            ["allowed", "identity: analysts", "command:  'uptime'"],
        ),
    ],
)
def test_policy_test_names_the_deciding_rule_and_runs_nothing(
    policy_file, capsys, argv, status, lines
):
    assert remsvc_main(["policy", "test", "--config", str(policy_file), *argv]) == status
    out = capsys.readouterr().out
    for line in lines:
        assert line in out.splitlines(), (line, out)


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["--as", "analyst", "uptime"], "no caller can be 'analyst' (did you mean analysts?)"),
        (["uptime"], "no identity given; give --as one of: analysts, ops"),
    ],
)
def test_policy_test_exits_2_for_a_caller_that_cannot_exist(policy_file, capsys, argv, expected):
    assert remsvc_main(["policy", "test", "--config", str(policy_file), *argv]) == 2
    err = capsys.readouterr().err
    assert err.startswith("remsvc policy test: configuration error: ")
    assert expected in err


def test_policy_test_exits_2_for_a_bad_file(tmp_path, capsys):
    path = tmp_path / "bad.ini"
    path.write_text("[allow_list]\nx = ^x$\n", encoding="utf-8")
    assert remsvc_main(["policy", "test", "--config", str(path), "x"]) == 2
    assert "did you mean [allowlist]?" in capsys.readouterr().err
