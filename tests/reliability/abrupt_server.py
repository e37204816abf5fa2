"""A server that answers a few commands back to back and ends the stream at once.

It reads ``answer`` commands, writes their responses one right after the other and
aborts the call with ``INTERNAL: server fell over``, while the client is typically
still writing the rest of its batch. That is the timing in which grpc.aio marks the
call failed from the client's pending write (grpc/grpc#36066) while responses the
server did send are still buffered in gRPC Core: a client that stops reading then
loses them. Responses are encoded by hand, as in tests/support/misbehaving_server.py.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
from types import TracebackType
from typing import Any

import grpc
import grpc.aio
from support.misbehaving_server import encode_response

from remsvc_core import wire
from remsvc_core.settings import ChannelSettings

__all__ = ["AbruptServer"]

DETAILS = "server fell over"


class AbruptServer:
    """``with AbruptServer(answer=3) as server: run_commands(..., server.settings())``."""

    def __init__(self, answer: int) -> None:
        self.answer = answer
        self.port = 0
        self.calls = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._server: grpc.aio.Server | None = None

    def settings(self) -> ChannelSettings:
        return ChannelSettings(target=f"127.0.0.1:{self.port}")

    async def _stream(self, request_iterator: Any, context: grpc.aio.ServicerContext) -> None:
        self.calls += 1
        requests = []
        for _ in range(self.answer):
            request = await context.read()
            if request is grpc.aio.EOF:
                break
            requests.append(request)
        for request in requests:
            await context.write(encode_response(request.tid, 0, b"answered\n", b"", b""))
        await context.abort(grpc.StatusCode.INTERNAL, DETAILS)

    def __enter__(self) -> AbruptServer:
        loop = asyncio.new_event_loop()
        started: concurrent.futures.Future[int] = concurrent.futures.Future()

        async def boot() -> None:
            try:
                server = grpc.aio.server()
                handler = grpc.stream_stream_rpc_method_handler(
                    self._stream,
                    request_deserializer=wire.pb.RemCmdMsg.FromString,
                    response_serializer=None,
                )
                server.add_generic_rpc_handlers(
                    (grpc.method_handlers_generic_handler(wire.SERVICE, {"RemCmdStrm": handler}),)
                )
                port = server.add_insecure_port("127.0.0.1:0")
                await server.start()
                self._server = server
                started.set_result(port)
            except BaseException as exc:
                started.set_exception(exc)

        def run() -> None:
            asyncio.set_event_loop(loop)
            booting = loop.create_task(boot())
            loop.run_forever()
            booting.cancel()
            loop.close()

        self._thread = threading.Thread(target=run, name="abrupt-server", daemon=True)
        self._thread.start()
        self._loop = loop
        self.port = started.result(timeout=15)
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        loop, thread, server = self._loop, self._thread, self._server
        if loop is None or thread is None:
            return
        if server is not None:
            asyncio.run_coroutine_threadsafe(server.stop(0), loop).result(timeout=15)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=15)
