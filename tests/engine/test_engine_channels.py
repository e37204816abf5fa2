"""Channels (per event loop, TLS, mTLS, tokens), sync entry points and probes."""

from __future__ import annotations

import asyncio
import gc
import logging
import threading
import weakref
from pathlib import Path

import pytest
from engine_helpers import free_port

from remsvc_core.channels import (
    cached_channel,
    channel_in_use,
    channel_options,
    close_channel_if_idle,
    close_channels,
    get_channel,
)
from remsvc_core.engine import NO_RETRY, run_commands, run_commands_sync
from remsvc_core.errors import RemSvcError, SettingsError
from remsvc_core.probes import get_status, get_status_sync, ping, ping_sync
from remsvc_core.settings import MIN_KEEPALIVE_S, ChannelSettings

pytestmark = pytest.mark.timeout(120)

TOKEN = "s3cret-token-for-tests"


# -- channels per loop -----------------------------------------------------------------


def test_channels_are_shared_within_a_loop_and_never_across(remsvc_server):
    settings = remsvc_server.settings()

    async def use_one_loop():
        first = await get_channel(settings)
        again = await get_channel(settings)
        with_token = await get_channel(ChannelSettings(target=settings.target, bearer_token="x"))
        other_limit = await get_channel(
            ChannelSettings(target=settings.target, max_receive_bytes=9)
        )
        assert first is again is with_token  # the token is per call, not per channel
        assert other_limit is not first
        outcome = await run_commands(["echo shared"], settings)
        assert outcome.complete
        assert await get_channel(settings) is first  # the stream used the cached channel
        closed = await close_channels()  # two: the stream opened no channel of its own
        assert await close_channels() == 0  # nothing left cached
        return first, closed

    channel_a, closed_a = asyncio.run(use_one_loop())
    channel_b, closed_b = asyncio.run(use_one_loop())
    assert channel_a is not channel_b
    assert closed_a == closed_b == 2


def test_an_idle_channel_can_be_closed_and_one_in_use_cannot(remsvc_server):
    """What a fan-out relies on to keep one channel per running host, not per host ever
    reached: a stream marks its channel as in use for as long as it runs."""
    settings = remsvc_server.settings()

    async def main():
        async with channel_in_use(settings) as channel:
            assert cached_channel(settings) is channel
            assert await close_channel_if_idle(settings) is False  # a stream uses it
            async with channel_in_use(settings):  # a second user of the same channel
                pass
            assert await close_channel_if_idle(settings) is False  # still the first one
        assert await close_channel_if_idle(settings) is True
        assert cached_channel(settings) is None
        assert await close_channel_if_idle(settings) is False  # nothing left to close
        outcome = await run_commands(["echo after"], settings)  # opens a new one
        assert outcome.complete
        assert cached_channel(settings) is not channel
        assert await close_channel_if_idle(settings) is True  # the stream let go of it
        return await close_channels()

    assert asyncio.run(main()) == 0


def test_loops_in_threads_get_their_own_channels(remsvc_server):
    settings = remsvc_server.settings()
    channels: dict[str, object] = {}
    outcomes: dict[str, object] = {}
    barrier = threading.Barrier(2, timeout=30)

    def worker(name: str) -> None:
        async def main():
            channels[name] = await get_channel(settings)
            await asyncio.to_thread(barrier.wait)  # both loops hold a channel at once
            outcomes[name] = await run_commands([f"echo {name}"], settings)
            await close_channels()

        asyncio.run(main())

    threads = [threading.Thread(target=worker, args=(name,)) for name in ("a", "b")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not any(thread.is_alive() for thread in threads)
    assert channels["a"] is not channels["b"]
    assert outcomes["a"].results[1].out == "a\n"
    assert outcomes["b"].results[1].out == "b\n"


def test_channels_of_a_closed_loop_are_dropped(remsvc_server):
    """A loop that ended without close_channels() must not pin its channel forever.

    (grpc itself remembers every loop it served, so the loop object cannot be the
    witness here; the channel is.)
    """
    settings = remsvc_server.settings()
    channel_ref: list[weakref.ref[object]] = []

    async def forget_to_close():
        channel_ref.append(weakref.ref(await get_channel(settings)))

    async def later():
        await get_channel(settings)
        await close_channels()

    asyncio.run(forget_to_close())
    assert channel_ref[0]() is not None
    asyncio.run(later())  # looking up channels drops the closed loop's entry
    gc.collect()
    assert channel_ref[0]() is None


def test_channel_options_carry_the_receive_limit_and_tls_name(tls_files):
    settings = ChannelSettings(
        target="127.0.0.1:1",
        use_tls=True,
        ca_cert_path=tls_files.ca_cert,
        tls_server_name="remsvc.internal",
        max_receive_bytes=12345,
    )
    options = dict(channel_options(settings))
    assert options["grpc.max_receive_message_length"] == 12345
    assert options["grpc.ssl_target_name_override"] == "remsvc.internal"
    assert "grpc.ssl_target_name_override" not in dict(
        channel_options(ChannelSettings(target="127.0.0.1:1"))
    )


def test_keepalive_s_sets_the_ping_interval_and_pings_on_silent_streams():
    default = dict(channel_options(ChannelSettings(target="127.0.0.1:1")))
    kept = dict(channel_options(ChannelSettings(target="127.0.0.1:1", keepalive_s=30)))

    # Unset: today's sparse pings, which gRPC stops after two without data.
    assert default["grpc.keepalive_time_ms"] == 300_000
    assert "grpc.http2.max_pings_without_data" not in default
    # Set: that interval, for as long as the stream stays silent, only while a call
    # is open (servers refuse frequent pings on a connection without calls).
    assert kept["grpc.keepalive_time_ms"] == 30_000
    assert kept["grpc.http2.max_pings_without_data"] == 0
    assert kept["grpc.keepalive_timeout_ms"] == default["grpc.keepalive_timeout_ms"]
    assert "grpc.keepalive_permit_without_calls" not in kept


async def test_a_stream_with_keepalive_runs_on_its_own_channel(server_process):
    server = server_process()
    plain = ChannelSettings(target=server.target)
    kept = ChannelSettings(target=server.target, keepalive_s=10)

    outcome = await run_commands(["echo kept"], kept, stream_timeout=30)

    assert outcome.complete, outcome.describe_failure()
    assert outcome.results[1].out == "kept\n"
    assert await get_channel(kept) is not await get_channel(plain)
    await close_channels()


# gRPC's default policy closes a connection at about the fifth ping of a silent stream
# (two strikes allowed after the first pings), so six intervals tell the two apart.
SILENT_S = 6 * MIN_KEEPALIVE_S


@pytest.mark.slow
async def test_a_silent_command_outlasts_many_keepalive_pings(server_process, misbehaving):
    """Our server accepts pings at the client's floor, where a default gRPC server
    answers GOAWAY "too_many_pings" and so ends the stream.

    Both streams run side by side with the same client settings; the second server is
    a plain ``grpc.aio`` server with default options that never answers, as a control
    that the pings really flow often enough to be refused.
    """
    ours = server_process(cmd_timeout_ms=(SILENT_S + 60) * 1000)
    strict = misbehaving(never_answer=True)

    kept, refused = await asyncio.gather(
        run_commands(
            [f"sleep {SILENT_S}; echo still here"],
            ChannelSettings(target=ours.target, keepalive_s=MIN_KEEPALIVE_S),
            retry=NO_RETRY,
            stream_timeout=SILENT_S + 60,
        ),
        run_commands(
            ["echo never answered"],
            strict.settings(keepalive_s=MIN_KEEPALIVE_S),
            retry=NO_RETRY,
            stream_timeout=SILENT_S + 30,
        ),
    )

    assert kept.complete, kept.describe_failure()
    assert kept.results[1].out == "still here\n"
    assert refused.status_code == "UNAVAILABLE", refused.describe_failure()
    assert "too many pings" in refused.status_details.lower()


async def test_a_ca_file_that_is_not_pem_is_a_settings_error(tmp_path: Path):
    not_pem = tmp_path / "ca.txt"
    not_pem.write_text("this is not a certificate\n")
    settings = ChannelSettings(target="127.0.0.1:1", use_tls=True, ca_cert_path=str(not_pem))
    with pytest.raises(SettingsError, match=r"ca_cert_path .*ca\.txt.* is not a PEM file"):
        await run_commands(["echo"], settings)


# -- TLS, mTLS and bearer tokens against a real server process ------------------------


@pytest.fixture
def tls_server(server_process, tls_files):
    return server_process(
        tls_enabled=True,
        tls_cert=tls_files.server_cert,
        tls_key=tls_files.server_key,
        auth={"ci": TOKEN},
    )


async def test_tls_with_bearer_token_runs_commands(tls_server, tls_files, caplog):
    caplog.set_level(logging.DEBUG)
    settings = ChannelSettings(
        target=tls_server.target, use_tls=True, ca_cert_path=tls_files.ca_cert, bearer_token=TOKEN
    )

    outcome = await run_commands(["echo secure"], settings, stream_timeout=30)

    assert outcome.complete, outcome.describe_failure()
    assert outcome.results[1].out == "secure\n"
    assert TOKEN not in repr(outcome.to_json())
    assert TOKEN not in caplog.text
    assert (await ping(settings)).latency_s > 0


async def test_tls_without_the_token_is_unauthenticated(tls_server, tls_files):
    settings = ChannelSettings(
        target=tls_server.target, use_tls=True, ca_cert_path=tls_files.ca_cert
    )
    outcome = await run_commands(["echo no"], settings, retry=NO_RETRY)
    assert outcome.status_code == "UNAUTHENTICATED"
    assert outcome.missing_tids == [1]


async def test_tls_with_the_wrong_ca_does_not_connect(tls_server, tls_files):
    settings = ChannelSettings(
        target=tls_server.target,
        use_tls=True,
        ca_cert_path=tls_files.other_ca_cert,
        bearer_token=TOKEN,
    )
    outcome = await run_commands(["echo no"], settings, retry=NO_RETRY, stream_timeout=20)
    assert outcome.status_code == "UNAVAILABLE"
    assert outcome.results == {}


async def test_tls_server_name_override(tls_server, tls_files):
    def settings(name: str) -> ChannelSettings:
        return ChannelSettings(
            target=tls_server.target,
            use_tls=True,
            ca_cert_path=tls_files.ca_cert,
            tls_server_name=name,
            bearer_token=TOKEN,
        )

    good = await run_commands(["echo named"], settings("localhost"), stream_timeout=30)
    bad = await run_commands(["echo named"], settings("elsewhere.test"), retry=NO_RETRY)

    assert good.complete
    assert bad.status_code == "UNAVAILABLE"


async def test_mutual_tls_needs_the_client_certificate(server_process, tls_files):
    server = server_process(
        tls_enabled=True,
        tls_cert=tls_files.server_cert,
        tls_key=tls_files.server_key,
        tls_ca=tls_files.ca_cert,
    )
    with_cert = ChannelSettings(
        target=server.target,
        use_tls=True,
        ca_cert_path=tls_files.ca_cert,
        client_cert_path=tls_files.client_cert,
        client_key_path=tls_files.client_key,
    )
    without_cert = ChannelSettings(
        target=server.target, use_tls=True, ca_cert_path=tls_files.ca_cert
    )

    good = await run_commands(["echo mutual"], with_cert, stream_timeout=30)
    bad = await run_commands(["echo mutual"], without_cert, retry=NO_RETRY, stream_timeout=20)

    assert good.complete, good.describe_failure()
    assert good.results[1].out == "mutual\n"
    assert bad.status_code == "UNAVAILABLE"
    assert bad.results == {}


# -- synchronous entry points ------------------------------------------------------------


def test_run_commands_sync_without_a_loop(remsvc_server):
    outcome = run_commands_sync(["echo plain"], remsvc_server.settings())
    assert outcome.results[1].out == "plain\n"


async def test_run_commands_sync_inside_a_running_loop(remsvc_server):
    """What a notebook cell does: a sync call while the kernel's loop is running."""
    outcome = run_commands_sync(["echo jupyter"], remsvc_server.settings())
    assert outcome.results[1].out == "jupyter\n"
    assert get_status_sync(remsvc_server.settings()).ok
    assert ping_sync(remsvc_server.settings()).seq > 0
    assert await close_channels() == 0  # the worker thread's loop closed its own channel


# -- probes ------------------------------------------------------------------------------


async def test_ping_and_status_against_the_real_server(remsvc_server):
    await run_commands(["echo counted"], remsvc_server.settings())

    reply = await ping(remsvc_server.settings())
    status = await get_status(remsvc_server.settings())

    assert reply.target == remsvc_server.target
    assert reply.latency_s > 0
    assert status.ok
    assert status.fields["state"] == "OK"
    assert status.fields["commands"] == "1"
    assert status.fields["uptime"].endswith("s")


async def test_probe_errors_name_target_and_code_never_the_token(remsvc_server_factory):
    server = remsvc_server_factory(auth={"ci": TOKEN}, allow_insecure_auth=True)
    wrong = server.settings(bearer_token="not-" + TOKEN)

    with pytest.raises(RemSvcError) as raised:
        await ping(wrong)
    message = str(raised.value)
    assert server.target in message
    assert "UNAUTHENTICATED" in message
    assert "bearer token" in message
    assert TOKEN not in message


async def test_probe_of_unreachable_server():
    target = f"127.0.0.1:{free_port()}"
    with pytest.raises(RemSvcError, match=rf"GetStatus to {target} failed with UNAVAILABLE"):
        await get_status(ChannelSettings(target=target))


async def test_probe_that_never_answers_times_out(misbehaving):
    server = misbehaving(hang_unary=True)
    with pytest.raises(RemSvcError, match="DEADLINE_EXCEEDED"):
        await asyncio.wait_for(ping(server.settings(), timeout=0.5), timeout=30)


async def test_probe_rejects_a_bad_timeout(misbehaving):
    with pytest.raises(SettingsError, match="timeout"):
        await ping(misbehaving().settings(), timeout=0)
