"""A TCP proxy that drops connections idle for ``idle_s``, as load balancers do.

It reads the HTTP/2 frames that cross it (plaintext gRPC) and, like AWS ALB, counts
only frames that carry a call (HEADERS, DATA, ...) as activity: PING, SETTINGS and
WINDOW_UPDATE frames do not keep a connection alive. A connection with no activity
for ``idle_s`` is closed on both sides. Runs on its own event loop in a thread, on
127.0.0.1.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import threading
import time
from types import TracebackType

__all__ = ["IdleProxy"]

_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
# Frames that are connection housekeeping, not traffic of a call.
_NOT_ACTIVITY = frozenset({0x4, 0x6, 0x8})  # SETTINGS, PING, WINDOW_UPDATE


class _FrameCounter:
    """Follows one direction's HTTP/2 frames and notes when a real one passes."""

    def __init__(self, expect_preface: bool, touch: object) -> None:
        self._buffer = bytearray()
        self._preface = len(_PREFACE) if expect_preface else 0
        self._touch = touch

    def feed(self, data: bytes) -> None:
        self._buffer += data
        if self._preface:
            taken = min(self._preface, len(self._buffer))
            del self._buffer[:taken]
            self._preface -= taken
        while len(self._buffer) >= 9:
            length = int.from_bytes(self._buffer[:3], "big")
            if len(self._buffer) < 9 + length:
                return
            kind = self._buffer[3]
            del self._buffer[: 9 + length]
            if kind not in _NOT_ACTIVITY:
                self._touch()  # type: ignore[operator]


class IdleProxy:
    """``with IdleProxy(target_port, idle_s=60) as proxy: ... proxy.target``."""

    def __init__(self, target_port: int, *, idle_s: float) -> None:
        self.target_port = target_port
        self.idle_s = idle_s
        self.port = 0
        self.dropped = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._server: asyncio.Server | None = None
        self._boot: asyncio.Task[None] | None = None

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.port}"

    async def _handle(self, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        server_r, server_w = await asyncio.open_connection("127.0.0.1", self.target_port)
        last = [time.monotonic()]

        def touch() -> None:
            last[0] = time.monotonic()

        async def pipe(
            reader: asyncio.StreamReader, writer: asyncio.StreamWriter, counter: _FrameCounter
        ) -> None:
            with contextlib.suppress(ConnectionError, asyncio.CancelledError):
                while data := await reader.read(65536):
                    counter.feed(data)
                    writer.write(data)
                    await writer.drain()

        pipes = [
            asyncio.create_task(pipe(client_r, server_w, _FrameCounter(True, touch))),
            asyncio.create_task(pipe(server_r, client_w, _FrameCounter(False, touch))),
        ]
        try:
            while not all(task.done() for task in pipes):
                await asyncio.sleep(0.1)
                if time.monotonic() - last[0] >= self.idle_s:
                    self.dropped += 1
                    break
        finally:
            for task in pipes:
                task.cancel()
            for writer in (client_w, server_w):
                writer.close()

    def __enter__(self) -> IdleProxy:
        loop = asyncio.new_event_loop()
        started: concurrent.futures.Future[int] = concurrent.futures.Future()

        async def boot() -> None:
            self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
            started.set_result(self._server.sockets[0].getsockname()[1])

        def run() -> None:
            asyncio.set_event_loop(loop)
            self._boot = loop.create_task(boot())
            loop.run_forever()
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.close()

        self._thread = threading.Thread(target=run, name="idle-proxy", daemon=True)
        self._thread.start()
        self.port = started.result(timeout=10)
        self._loop = loop
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        loop, thread = self._loop, self._thread
        if loop is None or thread is None:
            return

        async def stop() -> None:
            if self._server is not None:
                self._server.close()
            for task in asyncio.all_tasks():
                if task is not asyncio.current_task():
                    task.cancel()

        asyncio.run_coroutine_threadsafe(stop(), loop).result(timeout=10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=10)
