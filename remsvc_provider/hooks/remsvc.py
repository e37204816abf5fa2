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
from remsvc_core.errors import CallError, SettingsError
from remsvc_core.results import StreamOutcome
from remsvc_core.settings import ChannelSettings
from remsvc_core.synchronous import synchronous
from remsvc_provider import _connection_form as form
from remsvc_provider._compat import BaseHook, amask_secret, mask_secret
from remsvc_provider._redact import redact, scrub_outcome

# Standard connection fields this connection type has no use for. 1.0.0's form showed
# them and ignored them, so connections made with it may have them: ignored, with a
# warning. The Password field is where the form keeps the bearer token.
_UNUSED_FIELDS = ("login", "schema")


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
        conn: Any,
        *,
        metadata: Iterable[tuple[str, str]] = (),
        ignored: list[str] | None = None,
    ) -> ChannelSettings:
        """Build :class:`ChannelSettings` from an Airflow connection object.

        Accepts every form the connection can take: extras as form fields, as
        ``?key=value`` URI parameters, as ``__extra__`` JSON, as the original
        provider's ``?extra={...}`` JSON string, or with legacy ``extra__remsvc__``
        prefixes. The bearer token is the Password field or the ``bearer_token`` extra.
        Anything that cannot be honoured raises :class:`SettingsError`.

        With ``ignored`` (a list to fill), what 1.0.0 ignored is ignored too and named
        there: Login, Schema, and extras this version does not know, unless one looks
        like a TLS, token or certificate setting (that stays an error).
        """
        conn_id = getattr(conn, "conn_id", None) or "?"
        try:
            used = [name for name in _UNUSED_FIELDS if getattr(conn, name, None)]
            if used and ignored is None:
                raise SettingsError(
                    f"{', '.join(used)} set, which a remsvc connection does not use; "
                    f"clear {'them' if len(used) > 1 else 'it'}"
                )
            if ignored is not None:
                ignored.extend(used)
            return settings_from_fields(
                conn.host,
                conn.port,
                conn.extra,
                bearer_token=_token_of(conn),
                metadata=metadata,
                ignored=ignored,
            )
        except SettingsError as exc:
            raise SettingsError(f"connection {conn_id!r}: {exc}") from None

    # Each sync/async pair differs only in how Airflow is asked: the connection lookup,
    # and registering the token with the masker (the sync call from inside the
    # triggerer's loop can deadlock against a request already in flight).

    def get_channel_settings(self, metadata: Iterable[tuple[str, str]] = ()) -> ChannelSettings:
        """Read the connection (on a worker or in the CLI) and build settings."""
        conn = self.get_connection(self.grpc_conn_id)
        ignored: list[str] = []
        settings = self.settings_from_connection(conn, metadata=metadata, ignored=ignored)
        self._warn_ignored(ignored)
        for secret in _secrets_of(settings):
            mask_secret(secret)
        return settings

    async def aget_channel_settings(
        self, metadata: Iterable[tuple[str, str]] = ()
    ) -> ChannelSettings:
        """Read the connection from a coroutine (the triggerer) without blocking the loop."""
        conn = await _aget_connection(self.grpc_conn_id)
        # Building settings stats the certificate files; keep that off the event loop.
        ignored: list[str] = []
        settings = await asyncio.to_thread(
            self.settings_from_connection, conn, metadata=tuple(metadata), ignored=ignored
        )
        self._warn_ignored(ignored)
        for secret in _secrets_of(settings):
            await amask_secret(secret)
        return settings

    def _warn_ignored(self, ignored: Sequence[str]) -> None:
        if ignored:
            self.log.warning(
                "Connection %r: ignoring %s, which a remsvc connection does not use "
                "(airflow-provider-remsvc 1.0.0 ignored them too); clear them to silence this",
                self.grpc_conn_id,
                ", ".join(repr(name) for name in ignored),
            )

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
        """Answer the UI's Test button with a real Ping, so success means reachable.

        The UI tests a copy of the form saved under a random connection id, so the
        answer never names the connection; it says whether anything was sent, and
        what to fix.
        """
        settings: ChannelSettings | None = None
        try:
            conn = self.get_connection(self.grpc_conn_id)
            settings = self.settings_from_connection(conn, ignored=[])
            for secret in _secrets_of(settings):
                mask_secret(secret)
        except SettingsError as exc:
            reason = str(exc).removeprefix(f"connection {self.grpc_conn_id!r}: ")
            return False, f"Nothing was sent: these settings cannot be used: {_sentence(reason)}"
        except Exception as exc:
            return False, f"Nothing was sent: the connection could not be read. {_describe(exc)}"
        try:
            latency_s = _ping(settings, 10.0)
        except Exception as exc:
            where = settings.safe_description()
            return False, redact(f"Ping to {where} failed: {_describe(exc)}", settings)
        where = settings.safe_description()
        return True, f"RemSvc server at {where} answered Ping in {latency_s * 1000:.0f} ms"


def _ping(settings: ChannelSettings, timeout: float) -> float:
    # Imported here: the hook is loaded where forms are rendered, which needs no gRPC.
    from remsvc_core.probes import ping_sync

    return ping_sync(settings, timeout=timeout).latency_s


def _token_of(conn: Any) -> str | None:
    """The Password field, where the form keeps the token; None when it is empty."""
    password = getattr(conn, "password", None)
    return password if isinstance(password, str) and password else None


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


def _sentence(text: str) -> str:
    return text if text.endswith(".") else f"{text}."


def _describe(exc: BaseException) -> str:
    if isinstance(exc, CallError):
        said = f"{exc.code}: {exc.details}" if exc.details else exc.code
        if exc.hint:
            return f"{exc.hint[:1].upper()}{exc.hint[1:]}. (gRPC said {said})"
        return _sentence(said)
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
