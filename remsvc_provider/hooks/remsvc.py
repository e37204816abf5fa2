"""``RemSvcHook``: turns an Airflow connection of type ``remsvc`` into channel settings.

The hook holds no channel: the engine opens channels (one per event loop) and the
hook only says where and how to connect. It reads the connection in the worker
(``get_channel_settings``) or in the triggerer (``aget_channel_settings``, no blocking
call on the event loop) and registers the bearer token with Airflow's log masker the
moment it is read.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Sequence
from typing import Any

from remsvc_core.connection import settings_from_fields
from remsvc_core.errors import SettingsError
from remsvc_core.results import StreamOutcome
from remsvc_core.settings import ChannelSettings
from remsvc_core.synchronous import synchronous
from remsvc_provider import _connection_form as form
from remsvc_provider._compat import BaseHook, amask_secret, mask_secret
from remsvc_provider._redact import redact, scrub_outcome

# Standard connection fields this connection type has no use for. Setting one is a
# mistake (most likely a token typed into Password), so it is refused, not ignored.
_UNUSED_FIELDS = ("login", "password", "schema")


class RemSvcHook(BaseHook):
    """Reach a RemSvc server described by an Airflow connection.

    :param grpc_conn_id: id of a connection of type ``remsvc``.
    """

    conn_name_attr = "grpc_conn_id"
    default_conn_name = "remsvc_default"
    conn_type = form.CONN_TYPE
    hook_name = form.HOOK_NAME

    def __init__(self, grpc_conn_id: str = default_conn_name, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.grpc_conn_id = grpc_conn_id

    # -- the connection form (Airflow 3.1 reads these; 3.2+ reads the provider info) --

    @classmethod
    def get_connection_form_widgets(cls) -> dict[str, Any]:
        return form.connection_form_widgets()

    @classmethod
    def get_ui_field_behaviour(cls) -> dict[str, Any]:
        return form.ui_field_behaviour_hook()

    # -- settings --

    @staticmethod
    def settings_from_connection(
        conn: Any, *, metadata: Iterable[tuple[str, str]] = ()
    ) -> ChannelSettings:
        """Build :class:`ChannelSettings` from an Airflow connection object.

        Accepts every form the connection can take: extras as form fields, as
        ``?key=value`` URI parameters, as ``__extra__`` JSON, as the original
        provider's ``?extra={...}`` JSON string, or with legacy ``extra__remsvc__``
        prefixes. Anything that cannot be honoured raises :class:`SettingsError`.
        """
        conn_id = getattr(conn, "conn_id", None) or "?"
        used = [name for name in _UNUSED_FIELDS if getattr(conn, name, None)]
        if used:
            hint = (
                "; a bearer token goes in the extra field 'bearer_token', not the password"
                if "password" in used
                else ""
            )
            raise SettingsError(
                f"connection {conn_id!r} sets {', '.join(used)}, which a remsvc connection "
                f"does not use; clear {'them' if len(used) > 1 else 'it'}{hint}"
            )
        try:
            return settings_from_fields(conn.host, conn.port, conn.extra, metadata=metadata)
        except SettingsError as exc:
            raise SettingsError(f"connection {conn_id!r}: {exc}") from None

    # Each sync/async pair differs only in how Airflow is asked: the connection lookup,
    # and registering the token with the masker (the sync call from inside the
    # triggerer's loop can deadlock against a request already in flight).

    def get_channel_settings(self, metadata: Iterable[tuple[str, str]] = ()) -> ChannelSettings:
        """Read the connection (on a worker or in the CLI) and build settings."""
        conn = self.get_connection(self.grpc_conn_id)
        settings = self.settings_from_connection(conn, metadata=metadata)
        for secret in _secrets_of(settings):
            mask_secret(secret)
        return settings

    async def aget_channel_settings(
        self, metadata: Iterable[tuple[str, str]] = ()
    ) -> ChannelSettings:
        """Read the connection from a coroutine (the triggerer) without blocking the loop."""
        conn = await _aget_connection(self.grpc_conn_id)
        # Building settings stats the certificate files; keep that off the event loop.
        settings = await asyncio.to_thread(
            self.settings_from_connection, conn, metadata=tuple(metadata)
        )
        for secret in _secrets_of(settings):
            await amask_secret(secret)
        return settings

    def get_conn(self) -> ChannelSettings:
        """The hook's "connection" is its channel settings; channels belong to the engine."""
        return self.get_channel_settings()

    # -- calls --

    def run_commands(
        self,
        commands: Any,
        *,
        stream_timeout: float = 3600.0,
        metadata: Iterable[tuple[str, str]] = (),
        hooks: Sequence[object] = (),
        default_src: str = "",
        **options: Any,
    ) -> StreamOutcome:
        """Run a batch on the worker, blocking until the stream ends. ``options`` are
        :func:`~remsvc_core.engine.run_commands`'s (``batch_key``, ``follow``, ...)."""
        return synchronous(self._run)(
            self.get_channel_settings(),
            commands,
            stream_timeout,
            metadata,
            hooks,
            default_src,
            **options,
        )

    async def arun_commands(
        self,
        commands: Any,
        *,
        stream_timeout: float = 3600.0,
        metadata: Iterable[tuple[str, str]] = (),
        hooks: Sequence[object] = (),
        default_src: str = "",
        **options: Any,
    ) -> StreamOutcome:
        """Run a batch from a coroutine; cancelling it cancels the stream."""
        return await self._run(
            await self.aget_channel_settings(),
            commands,
            stream_timeout,
            metadata,
            hooks,
            default_src,
            **options,
        )

    async def _run(
        self,
        settings: ChannelSettings,
        commands: Any,
        stream_timeout: float,
        metadata: Iterable[tuple[str, str]],
        hooks: Sequence[object],
        default_src: str,
        **options: Any,
    ) -> StreamOutcome:
        from remsvc_core.engine import run_commands  # gRPC only where commands run

        self.log.info("Running %d command(s) on %s", _count(commands), settings.safe_description())
        outcome = await run_commands(
            commands,
            settings,
            stream_timeout=stream_timeout,
            metadata=tuple(metadata),
            hooks=hooks,
            default_src=default_src,
            **options,
        )
        return scrub_outcome(outcome, settings)

    def ping(self, timeout: float = 10.0) -> float:
        """Ping the server; returns the round trip in seconds."""
        return _ping(self.get_channel_settings(), timeout)

    def test_connection(self) -> tuple[bool, str]:
        """Answer the UI's Test button with a real Ping, so success means reachable."""
        settings: ChannelSettings | None = None
        try:
            settings = self.get_channel_settings()
            latency_s = _ping(settings, 10.0)
        except Exception as exc:
            where = f" at {settings.safe_description()}" if settings else ""
            return False, redact(f"RemSvc server{where} did not answer: {_describe(exc)}", settings)
        where = settings.safe_description()
        return True, f"RemSvc server at {where} answered Ping in {latency_s * 1000:.0f} ms"


def _ping(settings: ChannelSettings, timeout: float) -> float:
    # Imported here: the hook is loaded where forms are rendered, which needs no gRPC.
    from remsvc_core.probes import ping_sync

    return ping_sync(settings, timeout=timeout).latency_s


def _secrets_of(settings: ChannelSettings) -> list[str]:
    """What Airflow's log masker must know of these settings."""
    return [settings.bearer_token.reveal()] if settings.bearer_token else []


async def _aget_connection(conn_id: str) -> Any:
    aget = getattr(BaseHook, "aget_connection", None)
    if aget is not None:
        return await aget(conn_id)
    # Older Task SDKs: the sync lookup talks to the supervisor, so run it in a thread.
    from asgiref.sync import sync_to_async

    return await sync_to_async(BaseHook.get_connection)(conn_id)


def _describe(exc: BaseException) -> str:
    code = getattr(exc, "code", None)
    if callable(code):  # a grpc.RpcError
        try:
            details = exc.details()  # type: ignore[attr-defined]
            return f"{code().name}: {details}"
        except Exception:
            pass
    return f"{type(exc).__name__}: {exc}"


def _count(commands: Any) -> int:
    try:
        return len(commands)
    except TypeError:
        return 0


__all__ = ["RemSvcHook"]
