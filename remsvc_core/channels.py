"""gRPC channels to RemSvc servers, shared per event loop.

A ``grpc.aio`` channel belongs to the event loop it was created on, so channels are
cached per running loop and then per :meth:`ChannelSettings.channel_key`: every
stream to the same server from one loop (all deferred tasks in an Airflow triggerer,
say) shares one HTTP/2 connection, and no channel is ever used from another loop.
Bearer tokens are per call metadata, not part of a channel.

Certificate files are read once, when a channel is created, in a worker thread so the
event loop never waits on the disk.

A cached channel lives as long as its loop. A caller that opens channels to many
servers once each (a fan-out over a thousand hosts in a triggerer) closes the ones it
made when it is done with them (:func:`close_channel_if_idle`), so memory follows the
number of hosts running at once, not the number ever reached. Streams mark the
channel they use (:func:`channel_in_use`), so a channel is never closed under one.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import ssl
import threading
import weakref
from collections.abc import AsyncIterator, Hashable
from dataclasses import dataclass, field

import grpc
import grpc.aio

from remsvc_core.errors import SettingsError
from remsvc_core.settings import ChannelSettings

__all__ = [
    "cached_channel",
    "channel_in_use",
    "channel_options",
    "close_channel_if_idle",
    "close_channels",
    "get_channel",
    "open_channel",
]

# grpc's defaults back off reconnects up to 120 s: a server back after a restart could
# then stay unreachable from a long-lived triggerer for two minutes. Cap it well below.
_RECONNECT_OPTIONS: tuple[tuple[str, int], ...] = (
    ("grpc.initial_reconnect_backoff_ms", 500),
    ("grpc.min_reconnect_backoff_ms", 500),
    ("grpc.max_reconnect_backoff_ms", 8_000),
)
# A ping unanswered this long means the connection is gone.
_KEEPALIVE_TIMEOUT_MS = 20_000
# Without keepalive_s: a ping after 5 minutes without traffic, and (gRPC's default)
# at most two until data flows again. That notices a server that vanished early in a
# silent command and never offends a server's default ping policy (one ping per 5
# minutes), but it does not keep a connection through a proxy with a shorter idle
# timeout: that is what keepalive_s is for.
_DEFAULT_KEEPALIVE_MS = 300_000


def channel_options(settings: ChannelSettings) -> list[tuple[str, str | int]]:
    """The channel arguments used for ``settings`` (receive limit, TLS name, backoff,
    keepalive)."""
    options: list[tuple[str, str | int]] = [
        ("grpc.max_receive_message_length", settings.max_receive_bytes),
        *_RECONNECT_OPTIONS,
        *_keepalive_options(settings.keepalive_s),
    ]
    if settings.use_tls and settings.tls_server_name:
        options.append(("grpc.ssl_target_name_override", settings.tls_server_name))
    return options


def _keepalive_options(keepalive_s: int | None) -> list[tuple[str, int]]:
    if keepalive_s is None:
        return [
            ("grpc.keepalive_time_ms", _DEFAULT_KEEPALIVE_MS),
            ("grpc.keepalive_timeout_ms", _KEEPALIVE_TIMEOUT_MS),
        ]
    # Pings only while a call is open (no keepalive_permit_without_calls): an idle
    # channel may be dropped and reconnects on its next call, and servers refuse
    # pings on a connection without calls more often than every 2 hours.
    return [
        ("grpc.keepalive_time_ms", keepalive_s * 1000),
        ("grpc.keepalive_timeout_ms", _KEEPALIVE_TIMEOUT_MS),
        # However long a command stays silent (gRPC stops after two pings without data).
        ("grpc.http2.max_pings_without_data", 0),
    ]


@dataclass(frozen=True)
class _TlsMaterial:
    root_certificates: bytes | None
    certificate_chain: bytes | None
    private_key: bytes | None


def _read_pem(path: str, what: str) -> bytes:
    try:
        with open(path, "rb") as handle:
            data = handle.read()
    except OSError as exc:
        raise SettingsError(f"cannot read {what} {path!r}: {exc.strerror or exc}") from exc
    if b"-----BEGIN" not in data:
        raise SettingsError(f"{what} {path!r} is not a PEM file (no '-----BEGIN' line)")
    return data


def _system_roots() -> bytes | None:
    """The operating system's CA bundle, so TLS trusts what the host trusts.

    grpc's own default is a CA list bundled in the wheel, which knows nothing of a
    company CA installed on the host. ``GRPC_DEFAULT_SSL_ROOTS_FILE_PATH`` still wins.
    """
    if os.environ.get("GRPC_DEFAULT_SSL_ROOTS_FILE_PATH"):
        return None
    paths = ssl.get_default_verify_paths()
    for candidate in (paths.cafile, paths.openssl_cafile):
        if candidate and os.path.isfile(candidate):
            try:
                with open(candidate, "rb") as handle:
                    return handle.read()
            except OSError:
                continue
    return None


def _read_tls_material(settings: ChannelSettings) -> _TlsMaterial:
    roots = (
        _read_pem(settings.ca_cert_path, "ca_cert_path")
        if settings.ca_cert_path
        else _system_roots()
    )
    chain = key = None
    if settings.client_cert_path and settings.client_key_path:
        chain = _read_pem(settings.client_cert_path, "client_cert_path")
        key = _read_pem(settings.client_key_path, "client_key_path")
    return _TlsMaterial(roots, chain, key)


async def open_channel(settings: ChannelSettings) -> grpc.aio.Channel:
    """A new channel for ``settings`` on the running loop (not cached; caller closes it)."""
    options = channel_options(settings)
    if not settings.use_tls:
        return grpc.aio.insecure_channel(settings.target, options=options)
    material = await asyncio.to_thread(_read_tls_material, settings)
    credentials = grpc.ssl_channel_credentials(
        root_certificates=material.root_certificates,
        private_key=material.private_key,
        certificate_chain=material.certificate_chain,
    )
    return grpc.aio.secure_channel(settings.target, credentials, options=options)


@dataclass
class _LoopChannels:
    channels: dict[Hashable, grpc.aio.Channel] = field(default_factory=dict)
    # Streams using each channel right now (see channel_in_use).
    users: dict[Hashable, int] = field(default_factory=dict)
    # Created lazily on the owning loop; guards against two tasks building one channel.
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)


_by_loop: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _LoopChannels] = (
    weakref.WeakKeyDictionary()
)
# Loops in different threads look up the same dictionary.
_by_loop_lock = threading.Lock()


def _channels_of(loop: asyncio.AbstractEventLoop) -> _LoopChannels:
    with _by_loop_lock:
        # A cached channel refers to its loop, which keeps the weak key alive; drop the
        # entries of loops that were closed without close_channels() so they can go.
        for stale in [other for other in _by_loop if other.is_closed()]:
            del _by_loop[stale]
        state = _by_loop.get(loop)
        if state is None:
            state = _by_loop[loop] = _LoopChannels()
        return state


async def get_channel(settings: ChannelSettings) -> grpc.aio.Channel:
    """The shared channel for ``settings`` on the running event loop."""
    key = settings.channel_key()
    state = _channels_of(asyncio.get_running_loop())
    channel = state.channels.get(key)
    if channel is not None:
        return channel
    async with state.lock:
        channel = state.channels.get(key)
        if channel is None:
            channel = await open_channel(settings)
            state.channels[key] = channel
        return channel


def cached_channel(settings: ChannelSettings) -> grpc.aio.Channel | None:
    """The channel cached for ``settings`` on the running loop, or None (none opened)."""
    state = _channels_of(asyncio.get_running_loop())
    return state.channels.get(settings.channel_key())


@contextlib.asynccontextmanager
async def channel_in_use(settings: ChannelSettings) -> AsyncIterator[grpc.aio.Channel]:
    """The shared channel for ``settings``, marked as in use until the block ends, so
    :func:`close_channel_if_idle` leaves it open meanwhile."""
    channel = await get_channel(settings)
    # No await between getting the channel and counting the use: a close on the same
    # loop cannot slip in between.
    key = settings.channel_key()
    state = _channels_of(asyncio.get_running_loop())
    state.users[key] = state.users.get(key, 0) + 1
    try:
        yield channel
    finally:
        left = state.users.get(key, 1) - 1
        if left > 0:
            state.users[key] = left
        else:
            state.users.pop(key, None)


async def close_channel_if_idle(settings: ChannelSettings) -> bool:
    """Close the channel cached for ``settings`` on the running loop unless a stream
    uses it; returns whether one was closed. The next stream to that server opens a
    new one."""
    key = settings.channel_key()
    state = _channels_of(asyncio.get_running_loop())
    if state.users.get(key) or key not in state.channels:
        return False
    channel = state.channels.pop(key)  # gone from the cache before the first await
    await channel.close(None)
    return True


async def close_channels() -> int:
    """Close every cached channel of the running loop; returns how many were closed.

    Call it before a loop you created ends (``run_commands_sync`` does); a long-lived
    loop such as the Airflow triggerer's simply keeps its channels.
    """
    loop = asyncio.get_running_loop()
    with _by_loop_lock:
        state = _by_loop.pop(loop, None)
    if state is None:
        return 0
    channels = list(state.channels.values())
    state.channels.clear()
    state.users.clear()
    for channel in channels:
        await channel.close(None)
    return len(channels)
