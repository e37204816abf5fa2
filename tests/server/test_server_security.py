"""TLS, mutual TLS, bearer tokens and the allow/deny lists, against a real server process."""

from __future__ import annotations

from pathlib import Path

import grpc
import pytest
from server_waits import wait_for_text
from support.server_process import ServerStartError, run_stream

from remsvc_core.hashing import command_hash
from remsvc_core.server import auth as auth_module
from remsvc_core.server.auth import BearerAuthInterceptor
from remsvc_core.wire import pb, pb_grpc

ALICE_TOKEN = "alice-t0ken-9f8e7d"
BOB_TOKEN = "bob-t0ken-1a2b3c"
WRONG_TOKEN = "mallory-guess-0000"


def read(path: str) -> bytes:
    return Path(path).read_bytes()


def tls_channel(server, tls_files, *, ca=None, cert=None, key=None) -> grpc.Channel:
    credentials = grpc.ssl_channel_credentials(
        root_certificates=read(ca or tls_files.ca_cert),
        private_key=read(key) if key else None,
        certificate_chain=read(cert) if cert else None,
    )
    return grpc.secure_channel(server.target, credentials)


def ping(channel: grpc.Channel, metadata=None):
    return pb_grpc.RemSvcStub(channel).Ping(pb.PingMsg(seq=1), timeout=10, metadata=metadata)


def status_of(call) -> grpc.StatusCode:
    with pytest.raises(grpc.RpcError) as caught:
        call()
    return caught.value.code()


# -- TLS -------------------------------------------------------------------------------


@pytest.fixture
def tls_server(server_process, tls_files):
    return server_process(
        tls_enabled=True, tls_cert=tls_files.server_cert, tls_key=tls_files.server_key
    )


def test_tls_client_trusting_the_ca_runs_commands(tls_server, tls_files):
    with tls_channel(tls_server, tls_files) as channel:
        reply = pb_grpc.RemSvcStub(channel).RemCmd(
            pb.RemCmdMsg(cmd="echo secure", tid=1), timeout=10
        )
    assert (reply.rc, reply.out) == (0, "secure\n")


def test_tls_server_refuses_plaintext_clients(tls_server):
    with grpc.insecure_channel(tls_server.target) as channel:
        assert status_of(lambda: ping(channel)) == grpc.StatusCode.UNAVAILABLE


def test_tls_client_with_another_ca_does_not_trust_the_server(tls_server, tls_files):
    with tls_channel(tls_server, tls_files, ca=tls_files.other_ca_cert) as channel:
        assert status_of(lambda: ping(channel)) == grpc.StatusCode.UNAVAILABLE


@pytest.fixture
def mtls_server(server_process, tls_files):
    return server_process(
        tls_enabled=True,
        tls_cert=tls_files.server_cert,
        tls_key=tls_files.server_key,
        tls_ca=tls_files.ca_cert,
    )


def test_mtls_accepts_a_client_certificate_from_the_ca(mtls_server, tls_files):
    with tls_channel(
        mtls_server, tls_files, cert=tls_files.client_cert, key=tls_files.client_key
    ) as channel:
        assert ping(channel).seq == 1


def test_mtls_rejects_a_client_without_certificate(mtls_server, tls_files):
    with tls_channel(mtls_server, tls_files) as channel:
        assert status_of(lambda: ping(channel)) == grpc.StatusCode.UNAVAILABLE


def test_mtls_rejects_a_client_certificate_from_another_ca(mtls_server, tls_files):
    with tls_channel(
        mtls_server, tls_files, cert=tls_files.other_client_cert, key=tls_files.other_client_key
    ) as channel:
        assert status_of(lambda: ping(channel)) == grpc.StatusCode.UNAVAILABLE


# -- bearer tokens ---------------------------------------------------------------------


@pytest.fixture
def auth_server(server_process):
    return server_process(auth={"alice": ALICE_TOKEN, "bob": BOB_TOKEN})


@pytest.mark.parametrize(
    "metadata",
    [
        pytest.param(None, id="missing-header"),
        pytest.param([("authorization", f"bearer {ALICE_TOKEN}")], id="lowercase-scheme"),
        pytest.param([("authorization", f"Basic {ALICE_TOKEN}")], id="other-scheme"),
        pytest.param([("authorization", ALICE_TOKEN)], id="no-scheme"),
        pytest.param([("authorization", f"Bearer {WRONG_TOKEN}")], id="unknown-token"),
        pytest.param([("authorization", "Bearer ")], id="empty-token"),
        pytest.param([("authorization", f"Bearer {ALICE_TOKEN} ")], id="token-with-trailing-space"),
    ],
)
def test_every_rpc_refuses_bad_credentials_with_unauthenticated(auth_server, scratch, metadata):
    marker = scratch / "ran"
    with grpc.insecure_channel(auth_server.target) as channel:
        stub = pb_grpc.RemSvcStub(channel)
        unauthenticated = grpc.StatusCode.UNAUTHENTICATED
        assert status_of(lambda: ping(channel, metadata)) == unauthenticated
        assert (
            status_of(lambda: stub.GetStatus(pb.Empty(), timeout=10, metadata=metadata))
            == unauthenticated
        )
        request = pb.RemCmdMsg(cmd=f"touch {marker}", tid=1)
        assert (
            status_of(lambda: stub.RemCmd(request, timeout=10, metadata=metadata))
            == unauthenticated
        )
        run = run_stream(stub, [request], metadata=metadata)
    assert (run.responses, run.code) == ([], unauthenticated)
    assert not marker.exists()


def test_known_tokens_are_let_in_and_identities_logged_never_tokens(auth_server):
    with grpc.insecure_channel(auth_server.target) as channel:
        stub = pb_grpc.RemSvcStub(channel)
        alice = [("authorization", f"Bearer {ALICE_TOKEN}")]
        bob = [("authorization", f"Bearer {BOB_TOKEN}")]
        assert ping(channel, alice).seq == 1
        reply = stub.RemCmd(
            pb.RemCmdMsg(cmd="echo hi", tid=5, src="nightly"), timeout=10, metadata=alice
        )
        assert (reply.rc, reply.out) == (0, "hi\n")
        run = run_stream(stub, [pb.RemCmdMsg(cmd="exit 2", tid=9, src="adhoc")], metadata=bob)
        assert [(r.tid, r.rc) for r in run.responses] == [(9, 2)]
        mismatch = [pb.RemCmdMsg(cmd="echo a", tid=1), pb.RemCmdMsg(cmd="echo b", tid=2, hsh="0")]
        refused = run_stream(stub, mismatch, metadata=alice)
        assert ([r.tid for r in refused.responses], refused.code) == (
            [1],
            grpc.StatusCode.INVALID_ARGUMENT,
        )
        wrong = [("authorization", f"Bearer {WRONG_TOKEN}")]
        assert status_of(lambda: ping(channel, wrong)) == grpc.StatusCode.UNAUTHENTICATED
    lines = (
        "identity=alice src='nightly' tid=5 rc=0 duration_ms=",
        "identity=bob src='adhoc' tid=9 rc=2 duration_ms=",
        "unknown bearer token",
    )
    log = wait_for_text(auth_server.log_text, *lines)
    for line in lines:
        assert line in log
    for token in (ALICE_TOKEN, BOB_TOKEN, WRONG_TOKEN):
        assert token not in log


def test_tokens_and_tls_together(server_process, tls_files):
    server = server_process(
        tls_enabled=True,
        tls_cert=tls_files.server_cert,
        tls_key=tls_files.server_key,
        auth={"ci": ALICE_TOKEN},
    )
    with tls_channel(server, tls_files) as channel:
        assert ping(channel, [("authorization", f"Bearer {ALICE_TOKEN}")]).seq == 1
        assert status_of(lambda: ping(channel)) == grpc.StatusCode.UNAUTHENTICATED


def test_without_auth_section_everyone_is_let_in(stub):
    # Whatever a client sends (or not), a server without [auth] does not ask.
    assert stub.Ping(pb.PingMsg(seq=3), timeout=10).seq == 3
    metadata = [("authorization", "Bearer anything")]
    assert stub.Ping(pb.PingMsg(seq=4), timeout=10, metadata=metadata).seq == 4


def test_tokens_on_a_public_address_without_tls_refuse_to_start(server_process):
    # Never binds: the check runs before the server listens. The address is a
    # documentation one (RFC 5737) that no host here has, not 0.0.0.0: were the check
    # ever lost, the start would fail to bind rather than listen on every interface
    # (and the assertions below would still catch it).
    with pytest.raises(ServerStartError) as caught:
        server_process(host="198.51.100.1", auth={"ci": ALICE_TOKEN})
    assert caught.value.returncode == 2
    assert "[server] host" in caught.value.output
    assert "allow_insecure_auth" in caught.value.output
    assert ALICE_TOKEN not in caught.value.output


def test_token_comparison_checks_every_token_without_early_exit(monkeypatch):
    tokens = {f"user{i}": f"token-{i}" for i in range(5)}
    interceptor = BearerAuthInterceptor(tokens)
    calls: list[tuple[bytes, bytes]] = []
    real = auth_module.hmac.compare_digest

    def counting(a, b):
        calls.append((a, b))
        return real(a, b)

    monkeypatch.setattr(auth_module.hmac, "compare_digest", counting)
    # "user0" sorts first, so an early exit would stop after one comparison.
    assert interceptor.authenticate([("authorization", "Bearer token-0")]) == ("user0", "")
    assert len(calls) == 5
    # Equal-length digests: nothing about the token's length leaks through timing.
    assert {len(a) for a, _ in calls} | {len(b) for _, b in calls} == {32}
    calls.clear()
    assert interceptor.authenticate([("authorization", "Bearer nope")])[0] is None
    assert len(calls) == 5
    assert "token-0" not in repr(vars(interceptor))


# -- allow and deny lists --------------------------------------------------------------


@pytest.fixture
def policy_server(server_process):
    return server_process(
        allowlist={"10_echo": r"^echo ", "20_true": r"^true$"},
        denylist={"10_secrets": r"secret", "20_rm": r"\brm\b"},
    )


def test_allowed_commands_run(policy_server):
    with grpc.insecure_channel(policy_server.target) as channel:
        run = run_stream(
            pb_grpc.RemSvcStub(channel),
            [pb.RemCmdMsg(cmd="echo ok", tid=1), pb.RemCmdMsg(cmd="true", tid=2)],
        )
    assert run.code == grpc.StatusCode.OK
    assert [(r.tid, r.rc) for r in run.responses] == [(1, 0), (2, 0)]


@pytest.mark.parametrize(
    ("cmd", "reason"),
    [
        pytest.param("echo my secret", "denylist rule '10_secrets'", id="deny-wins-over-allow"),
        pytest.param("ls /", "matches no allowlist rule", id="not-on-allowlist"),
        pytest.param("true; ls", "matches no allowlist rule", id="allow-anchor"),
        pytest.param("echo x; rm -rf /tmp/x", "denylist rule '20_rm'", id="deny-anywhere"),
    ],
)
def test_refused_command_ends_the_stream_with_permission_denied(
    policy_server, scratch, cmd, reason
):
    marker = scratch / "later"
    requests = [
        pb.RemCmdMsg(cmd="echo first", tid=1),
        pb.RemCmdMsg(cmd=cmd, tid=2),
        pb.RemCmdMsg(cmd=f"echo later > {marker}", tid=3),
    ]
    with grpc.insecure_channel(policy_server.target) as channel:
        stub = pb_grpc.RemSvcStub(channel)
        run = run_stream(stub, requests)
        with pytest.raises(grpc.RpcError) as unary:
            stub.RemCmd(pb.RemCmdMsg(cmd=cmd, tid=1), timeout=10)
    assert [(r.tid, r.out) for r in run.responses] == [(1, "first\n")]
    assert run.code == grpc.StatusCode.PERMISSION_DENIED
    assert reason in run.details
    assert not marker.exists()
    assert unary.value.code() == grpc.StatusCode.PERMISSION_DENIED


def test_pattern_that_does_not_compile_puts_the_server_in_deny_all_mode(server_process):
    server = server_process(allowlist={"anything": "."}, denylist={"broken": "([unclosed"})
    with grpc.insecure_channel(server.target) as channel:
        stub = pb_grpc.RemSvcStub(channel)
        assert stub.Ping(pb.PingMsg(seq=1), timeout=10).seq == 1
        cmd = "echo harmless"
        with pytest.raises(grpc.RpcError) as caught:
            stub.RemCmd(pb.RemCmdMsg(cmd=cmd, tid=1, hsh=command_hash(cmd)), timeout=10)
        run = run_stream(stub, [pb.RemCmdMsg(cmd="true", tid=1)])
    assert caught.value.code() == grpc.StatusCode.PERMISSION_DENIED
    assert "deny-all" in caught.value.details()
    assert (run.responses, run.code) == ([], grpc.StatusCode.PERMISSION_DENIED)
    log = wait_for_text(server.log_text, "DENY-ALL MODE", "[denylist] broken")
    assert "DENY-ALL MODE" in log
    assert "[denylist] broken" in log
