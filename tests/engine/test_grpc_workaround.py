"""Pinned to the installed grpcio: what remsvc_core/grpc_workaround.py relies on.

The workaround for grpc/grpc#36066 reads private parts of grpc.aio. These tests fail
loudly, saying why, when (a) a private name it uses changes, or (b) the upstream bug
no longer reproduces, so the workaround can be removed instead of rotting.
"""

from __future__ import annotations

import asyncio
import inspect
from typing import Any

import grpc
import grpc.aio
import pytest
from support.misbehaving_server import encode_response

from remsvc_core import wire
from remsvc_core.commands import validate_commands
from remsvc_core.grpc_workaround import EOF, SYNTHETIC_INTERNAL, value_now

ROUNDS = 300  # bounded; it shows in the first few streams, even on a loaded machine
ANSWERED = 3
ABORT = (grpc.StatusCode.INTERNAL, "server fell over")


class AbortingServer:
    """Answers the first few commands back to back, then aborts the call: the moment
    at which a client still writing hits the bug. A real grpc.aio server on loopback."""

    def __init__(self) -> None:
        self.server = grpc.aio.server()
        handler = grpc.stream_stream_rpc_method_handler(
            self._stream, request_deserializer=wire.pb.RemCmdMsg.FromString
        )
        self.server.add_generic_rpc_handlers(
            (grpc.method_handlers_generic_handler(wire.SERVICE, {"RemCmdStrm": handler}),)
        )
        self.port = self.server.add_insecure_port("127.0.0.1:0")

    async def _stream(self, requests: Any, context: grpc.aio.ServicerContext) -> None:
        tids = []
        for _ in range(ANSWERED):
            request = await context.read()
            if request is grpc.aio.EOF:
                break
            tids.append(request.tid)
        for tid in tids:
            await context.write(encode_response(tid, 0, b"answered\n", b"", b""))
        await context.abort(*ABORT)


async def _one_unwindowed_stream(channel: grpc.aio.Channel) -> tuple[tuple[str, str], int]:
    """Write 300 commands as fast as grpc takes them (no window) and read plainly, as a
    client without the workaround does; returns (final status, responses read)."""
    encoded = wire.encode_batch(validate_commands([f"echo {n}" for n in range(300)]))
    call = channel.stream_stream(wire.METHOD_STREAM, request_serializer=None)(
        request_iterator=None, timeout=20
    )

    async def write() -> None:
        try:
            for data in encoded:
                await call.write(data)
        except (grpc.aio.AioRpcError, grpc.aio.UsageError, grpc.aio.InternalError):
            pass

    writer = asyncio.create_task(write())
    read = 0
    try:
        while (await call.read()) is not EOF:
            read += 1
        status = (call_code := await call.code()).name, await call.details()
    except grpc.aio.AioRpcError as exc:
        call_code = exc.code()
        status = call_code.name, exc.details() or ""
    await writer
    return status, read


async def _read_to_end(call: Any) -> None:
    while (await call.read()) is not EOF:
        pass


async def test_the_upstream_bug_still_reproduces() -> None:
    """If this fails, grpc/grpc#36066 looks fixed in the installed grpcio: check its
    changelog, then delete remsvc_core/grpc_workaround.py, its uses in the engine, the
    send window's first reason, and this file."""
    server = AbortingServer()
    await server.server.start()
    seen: list[tuple[tuple[str, str], int]] = []
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
            for _ in range(ROUNDS):
                status, read = await _one_unwindowed_stream(channel)
                seen.append((status, read))
                if status == SYNTHETIC_INTERNAL or read < ANSWERED:
                    break
    finally:
        await server.server.stop(0)
    print(f"grpc#36066 showed after {len(seen)} stream(s) on grpcio {grpc.__version__}")
    bitten = [s for s in seen if s[0] == SYNTHETIC_INTERNAL or s[1] < ANSWERED]
    assert bitten, (
        f"grpc/grpc#36066 did not reproduce in {len(seen)} streams on grpcio "
        f"{grpc.__version__} (statuses: {sorted({s[0] for s in seen})}); the workaround in "
        "remsvc_core/grpc_workaround.py may no longer be needed"
    )


async def test_private_names_the_workaround_reads_are_there() -> None:
    server = AbortingServer()
    await server.server.start()
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
            call = channel.stream_stream(wire.METHOD_STREAM)(request_iterator=None, timeout=10)
            read = getattr(call, "_read", None)
            call.cancel()
    finally:
        await server.server.stop(0)
    missing = (
        f"grpc.aio stream calls have no coroutine method _read in grpcio {grpc.__version__}; "
        "drain_buffered in remsvc_core/grpc_workaround.py silently reads nothing now: "
        "find the new way to read the responses Core buffered"
    )
    assert read is not None, missing
    assert inspect.iscoroutinefunction(read), missing


async def test_a_finished_calls_status_reads_without_suspending() -> None:
    """StatusWatch's done-callback steps code()/details() by hand (value_now)."""
    server = AbortingServer()
    await server.server.start()
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
            call = channel.stream_stream(wire.METHOD_STREAM, request_serializer=None)(
                request_iterator=None, timeout=10
            )
            await call.done_writing()  # the server aborts after reading EOF
            with pytest.raises(grpc.aio.AioRpcError):
                await _read_to_end(call)
            assert call.done()
            code = value_now(call.code())
            details = value_now(call.details())
    finally:
        await server.server.stop(0)
    assert (code, details) == ABORT, (
        f"reading a finished call's code()/details() now suspends in grpcio "
        f"{grpc.__version__}; StatusWatch._on_done can no longer keep the server's status"
    )
