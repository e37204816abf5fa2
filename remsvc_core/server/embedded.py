"""Run the reference server in a background thread with its own event loop.

Works from plain synchronous code, from inside a running event loop (a notebook cell,
an async test) and from the CLI, because the server never shares the caller's loop::

    with EmbeddedServer() as server:
        outcome = run_commands_sync(["uname -a"], server.settings())
"""

from __future__ import annotations

import asyncio
import atexit
import concurrent.futures
import threading
from types import TracebackType
from typing import Any

from remsvc_core.server.app import RunningServer, start_server
from remsvc_core.server.config import ServerConfig
from remsvc_core.settings import ChannelSettings

__all__ = ["EmbeddedServer"]

_START_TIMEOUT_S = 30.0


class EmbeddedServer:
    """A reference server on its own thread. Default: 127.0.0.1, an ephemeral port.

    Use as a context manager (``with`` or ``async with``), or call :meth:`start` and
    :meth:`stop`. ``port``, ``target`` and :meth:`settings` are available once started.
    """

    def __init__(self, config: ServerConfig | None = None, **overrides: Any) -> None:
        base = config if config is not None else ServerConfig(port=0, source="<EmbeddedServer>")
        self.config = base.replace(**overrides) if overrides else base
        self.config.validate()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._running: RunningServer | None = None
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        where = self.target if self._running else "not started"
        return f"EmbeddedServer({where})"

    # -- lifecycle -------------------------------------------------------------------

    def start(self) -> EmbeddedServer:
        """Start the server; returns once it listens. Raises what startup raised."""
        with self._lock:
            if self._running is not None:
                return self
            loop = asyncio.new_event_loop()
            started: concurrent.futures.Future[RunningServer] = concurrent.futures.Future()

            def run() -> None:
                asyncio.set_event_loop(loop)

                async def boot() -> None:
                    try:
                        started.set_result(await start_server(self.config))
                    except BaseException as exc:  # handed to the starting thread
                        started.set_exception(exc)

                booting = loop.create_task(boot())
                loop.run_forever()
                booting.cancel()
                loop.run_until_complete(loop.shutdown_asyncgens())
                loop.close()

            thread = threading.Thread(target=run, name="remsvc-embedded-server", daemon=True)
            thread.start()
            try:
                self._running = started.result(timeout=_START_TIMEOUT_S)
            except BaseException:
                loop.call_soon_threadsafe(loop.stop)
                thread.join(timeout=5.0)
                raise
            self._loop, self._thread = loop, thread
            # A server forgotten at interpreter exit still kills its commands.
            atexit.register(self.stop)
            return self

    def stop(self, grace: float | None = 0.0) -> None:
        """Stop (draining for ``grace`` seconds, default none) and end the thread."""
        with self._lock:
            loop, thread, running = self._loop, self._thread, self._running
            if loop is None or thread is None or running is None:
                return
            atexit.unregister(self.stop)
            wait = (running.config.drain_grace_s if grace is None else grace) + 15.0
            try:
                asyncio.run_coroutine_threadsafe(running.stop(grace), loop).result(timeout=wait)
            finally:
                loop.call_soon_threadsafe(loop.stop)
                thread.join(timeout=10.0)
                self._loop = self._thread = self._running = None

    def __enter__(self) -> EmbeddedServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    async def __aenter__(self) -> EmbeddedServer:
        # Startup blocks briefly; keep the caller's loop responsive meanwhile.
        return await asyncio.to_thread(self.start)

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await asyncio.to_thread(self.stop)

    # -- where it is -----------------------------------------------------------------

    def _require(self) -> RunningServer:
        if self._running is None:
            raise RuntimeError(
                "EmbeddedServer is not running; use it as a context manager or call start()"
            )
        return self._running

    @property
    def running(self) -> bool:
        return self._running is not None

    @property
    def port(self) -> int:
        return self._require().port

    @property
    def target(self) -> str:
        return self._require().target

    @property
    def commands_run(self) -> int:
        return self._require().commands_run

    @property
    def running_pids(self) -> list[int]:
        """Pids (= process group ids) of commands running right now."""
        return self._require().running_pids

    def settings(self, **overrides: Any) -> ChannelSettings:
        """ChannelSettings that reach this server; ``overrides`` go to ChannelSettings.

        With TLS on, the CA defaults to ``tls_ca`` if set, else the server certificate
        itself (right for a self-signed one); pass ``ca_cert_path`` when a separate CA
        signed the server certificate.
        """
        values: dict[str, Any] = {"target": self.target}
        if self.config.tls_enabled:
            values["use_tls"] = True
            values["ca_cert_path"] = self.config.tls_ca or self.config.tls_cert
        values.update(overrides)
        return ChannelSettings(**values)
