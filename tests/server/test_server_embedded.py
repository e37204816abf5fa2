"""EmbeddedServer (own thread, own loop) and the ``remsvc`` pytest plugin's fixtures."""

from __future__ import annotations

import asyncio
import os
import socket
import threading
from pathlib import Path

import grpc
import psutil
import pytest
from support.server_process import run_stream, wait_until_gone

from remsvc_core.errors import ServerConfigError
from remsvc_core.server.config import ServerConfig
from remsvc_core.server.embedded import EmbeddedServer
from remsvc_core.server.runner import CommandRunner
from remsvc_core.wire import pb, pb_grpc


def remcmd(target: str, cmd: str, **kw) -> object:
    with grpc.insecure_channel(target) as channel:
        return pb_grpc.RemSvcStub(channel).RemCmd(pb.RemCmdMsg(cmd=cmd, tid=1, **kw), timeout=10)


def test_context_manager_from_sync_code():
    with EmbeddedServer() as server:
        assert server.target == f"127.0.0.1:{server.port}"
        assert server.port > 0
        assert remcmd(server.target, "echo embedded").out == "embedded\n"
        assert server.commands_run == 1
    assert not server.running
    with pytest.raises(RuntimeError, match="not running"):
        _ = server.port
    server.stop()  # stopping twice is harmless


async def test_usable_inside_a_running_event_loop():
    # As in a notebook cell: the caller's loop is running, the server has its own.
    with EmbeddedServer(cmd_timeout_ms=5000) as server:
        async with grpc.aio.insecure_channel(server.target) as channel:
            reply = await pb_grpc.RemSvcStub(channel).RemCmd(
                pb.RemCmdMsg(cmd="echo aio", tid=1), timeout=10
            )
    assert reply.out == "aio\n"


async def test_async_context_manager():
    async with EmbeddedServer() as server, grpc.aio.insecure_channel(server.target) as channel:
        pong = await pb_grpc.RemSvcStub(channel).Ping(pb.PingMsg(seq=11), timeout=10)
    assert pong.seq == 11
    assert not server.running


def test_settings_reach_the_server():
    with EmbeddedServer() as server:
        settings = server.settings(metadata=[("X-Trace", "1")])
        assert (settings.target, settings.use_tls) == (server.target, False)
        assert settings.metadata == (("x-trace", "1"),)
        assert remcmd(settings.target, "echo via-settings").out == "via-settings\n"


def test_settings_match_a_tls_config_and_connect(tls_files):
    config = ServerConfig(
        port=0,
        tls_enabled=True,
        tls_cert=tls_files.server_cert,
        tls_key=tls_files.server_key,
        tls_ca=tls_files.ca_cert,
    )
    with EmbeddedServer(config) as server:
        settings = server.settings(
            client_cert_path=tls_files.client_cert, client_key_path=tls_files.client_key
        )
        assert (settings.use_tls, settings.ca_cert_path) == (True, tls_files.ca_cert)
        credentials = grpc.ssl_channel_credentials(
            root_certificates=Path(settings.ca_cert_path).read_bytes(),
            private_key=Path(settings.client_key_path).read_bytes(),
            certificate_chain=Path(settings.client_cert_path).read_bytes(),
        )
        with grpc.secure_channel(settings.target, credentials) as channel:
            assert pb_grpc.RemSvcStub(channel).Ping(pb.PingMsg(seq=5), timeout=10).seq == 5


def test_start_failure_is_raised_and_leaves_no_thread():
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        threads_before = {t.name for t in threading.enumerate()}
        with pytest.raises(ServerConfigError, match=rf"cannot listen on 127\.0\.0\.1:{port}"):
            EmbeddedServer(port=port).start()
    names = [t.name for t in threading.enumerate() if t.name not in threads_before]
    assert "remsvc-embedded-server" not in names


def test_invalid_override_is_refused_before_starting():
    with pytest.raises(ServerConfigError, match=r"\[server\] cmd_timeout_ms"):
        EmbeddedServer(cmd_timeout_ms=0)


def test_stop_kills_running_commands(tmp_path):
    started = tmp_path / "started"
    server = EmbeddedServer().start()
    outcome: dict[str, object] = {}

    def call() -> None:
        try:
            remcmd(server.target, f"echo $$ > {started}; exec sleep 60")
        except grpc.RpcError as exc:
            outcome["code"] = exc.code()

    caller = threading.Thread(target=call)
    caller.start()
    try:
        for _ in range(500):  # bounded: up to ~10 s
            if server.running_pids:
                break
            threading.Event().wait(0.02)
        pids = server.running_pids
        assert len(pids) == 1
    finally:
        server.stop()
    caller.join(timeout=15)
    assert not caller.is_alive()
    assert wait_until_gone(pids[0])
    # Reaped, not left as zombies of this (the server's) process.
    assert pids[0] not in [child.pid for child in psutil.Process().children()]
    assert outcome["code"] in (grpc.StatusCode.CANCELLED, grpc.StatusCode.UNAVAILABLE)


def test_remsvc_server_fixture_is_running(remsvc_server):
    assert remsvc_server.running
    assert remcmd(remsvc_server.target, "echo fixture").out == "fixture\n"


def test_remsvc_server_factory_applies_overrides(remsvc_server_factory):
    quick = remsvc_server_factory(cmd_timeout_ms=300)
    capped = remsvc_server_factory(ServerConfig(output_cap_bytes=4))
    assert quick.port != capped.port
    timed_out = remcmd(quick.target, "sleep 5")
    assert (timed_out.rc, timed_out.err) == (1, "process timed out")
    assert remcmd(capped.target, "echo 123456").out.startswith(
        "1234\n\x01[remSvc: output truncated at 4 bytes]"
    )


def test_embedded_servers_in_many_threads_do_not_interfere():
    results: list[str] = []

    def one(index: int) -> None:
        with EmbeddedServer() as server:
            results.append(remcmd(server.target, f"echo {index}").out)

    threads = [threading.Thread(target=one, args=(i,)) for i in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert sorted(results) == ["0\n", "1\n", "2\n"]


def test_embedded_server_in_asyncio_run_from_a_thread_without_loop():
    # No loop in this thread at all; asyncio.run elsewhere must not be disturbed.
    with EmbeddedServer() as server:
        assert asyncio.run(_ping(server.target)) == 9


async def _ping(target: str) -> int:
    async with grpc.aio.insecure_channel(target) as channel:
        return (await pb_grpc.RemSvcStub(channel).Ping(pb.PingMsg(seq=9), timeout=10)).seq


def test_a_server_fault_ends_the_stream_with_internal_keeping_earlier_results(
    monkeypatch, tmp_path
):
    # Fault injection (a real runner cannot be made to fail on demand): the stream must
    # not end "OK" with a result silently missing.
    real_start = CommandRunner.start

    def faulty(self, cmd, cmdtyp=0, cmdusr="", **kwargs):
        if cmd == "explode":
            raise RuntimeError("injected fault")
        return real_start(self, cmd, cmdtyp, cmdusr, **kwargs)

    monkeypatch.setattr(CommandRunner, "start", faulty)
    never = tmp_path / "never"
    requests = [
        pb.RemCmdMsg(cmd="echo 1", tid=1),
        pb.RemCmdMsg(cmd="explode", tid=2),
        pb.RemCmdMsg(cmd=f"touch {never}", tid=3),
    ]
    with EmbeddedServer() as server, grpc.insecure_channel(server.target) as channel:
        run = run_stream(pb_grpc.RemSvcStub(channel), requests)
    assert [(r.tid, r.out) for r in run.responses] == [(1, "1\n")]
    assert (run.code, run.details) == (grpc.StatusCode.INTERNAL, "internal error running tid 2")
    assert not never.exists()


def test_commands_of_an_embedded_server_inherit_no_descriptor_of_the_host():
    # The host's descriptors are not the server's to change; commands still must not
    # inherit them.
    read_end, write_end = os.pipe()
    os.set_inheritable(write_end, True)
    try:
        with EmbeddedServer() as server, grpc.insecure_channel(server.target) as channel:
            stub = pb_grpc.RemSvcStub(channel)
            listing = stub.RemCmd(pb.RemCmdMsg(cmd="ls /proc/$$/fd", tid=1), timeout=10)
            piped = stub.RemCmd(pb.RemCmdMsg(cmd="yes | head -n 1", tid=2), timeout=10)
    finally:
        os.close(read_end)
        os.close(write_end)
    assert (listing.rc, listing.out.split()) == (0, ["0", "1", "2"])
    assert (piped.rc, piped.out, piped.err) == (0, "y\n", "")


def test_a_stopped_server_puts_the_process_wide_log_level_back() -> None:
    import logging

    from remsvc_core.server.config import ServerConfig
    from remsvc_core.server.embedded import EmbeddedServer

    logger = logging.getLogger("remsvc.server")
    before = logger.level
    with EmbeddedServer(ServerConfig(port=0, log_level="error")):
        assert logger.level == logging.ERROR
    assert logger.level == before
