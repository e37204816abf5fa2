"""A RemSvc server that breaks the rules on purpose, for the engine's fault tests.

It is a real ``grpc.aio`` server on loopback (own event loop, own thread) built from
generic handlers, so it can put on the wire what no well-behaved server would: raw
non-UTF-8 bytes in ``out``/``err``, a tid twice, a tid never asked for, bytes that
are no protobuf message at all, answers in reverse order, no answers, a failure after
some answers, or a refusal before reading anything.

Responses are encoded by hand (a few lines of protobuf wire format) rather than with
the package's own code, so a bug in the client's decoder cannot hide itself here.
Commands are not executed; the server records every command it read in
:attr:`MisbehavingServer.received` so tests can count what reached a server.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any

import grpc
import grpc.aio

from remsvc_core import wire
from remsvc_core.settings import ChannelSettings

__all__ = ["MisbehavingServer", "Misbehaviour", "encode_response"]

_START_TIMEOUT_S = 15.0
_NEVER_S = 3600.0  # "forever" for a server that never answers; the client gives up first


def _varint(value: int) -> bytes:
    value &= (1 << 64) - 1  # negative int32 go on the wire as 10-byte varints
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def encode_response(
    tid: int, rc: int = 0, out: bytes = b"", err: bytes = b"", hsh: bytes = b""
) -> bytes:
    """A ``RemResMsg`` in protobuf wire format, with ``out``/``err`` as raw bytes."""
    message = bytearray()
    for number, value in ((1, rc), (2, tid)):
        if value:
            message += _varint(number << 3) + _varint(value)
    for number, data in ((3, out), (4, err), (5, hsh)):
        if data:
            message += _varint(number << 3 | 2) + _varint(len(data)) + data
    return bytes(message)


# A length-delimited field claiming 127 bytes and carrying one: no parser accepts it.
GARBAGE = b"\x1a\x7fX"


@dataclass
class Misbehaviour:
    """What the server does wrong. The default is a polite in-order echo server.

    Each read command is answered with rc 0, ``out`` = ``"ran <cmd>\\n"`` and the
    request's hsh echoed, unless a field below says otherwise.
    """

    raw_out: dict[int, bytes] = field(default_factory=dict)  # tid -> raw bytes for out
    raw_err: dict[int, bytes] = field(default_factory=dict)  # tid -> raw bytes for err
    out_size: dict[int, int] = field(default_factory=dict)  # tid -> out of this many bytes
    rc: dict[int, int] = field(default_factory=dict)  # tid -> exit code
    repeat_tids: frozenset[int] = frozenset()  # answered twice (second with rc 99)
    unknown_tids: tuple[int, ...] = ()  # sent right after the first answer
    flood_unknown: tuple[int, int] | None = None  # (count, body bytes) after the first answer
    garbage_after_first: bool = False  # bytes that are no RemResMsg, after the first answer
    reverse: bool = False  # read every command, then answer the last first
    never_answer: bool = False  # read every command, then hold the stream open silently
    fail_after_answers: int | None = None  # end the call after this many answers
    fail_after_reading: int | None = None  # end the call after reading this many commands
    fail_code: grpc.StatusCode = grpc.StatusCode.UNAVAILABLE
    fail_details: str = "injected failure"
    reject_first_calls: int = 0  # the first N calls end before reading anything
    reject_code: grpc.StatusCode = grpc.StatusCode.UNAVAILABLE
    answer_delay_s: float = 0.0  # sleep before each answer
    hang_unary: bool = False  # Ping/GetStatus never answer
    status_msg: str = "state=OK uptime=1s commands=0"  # what GetStatus says


@dataclass(frozen=True)
class Received:
    call: int
    tid: int
    cmd: str
    hsh: str
    src: str


class MisbehavingServer:
    """``with MisbehavingServer(Misbehaviour(...)) as server: ... server.settings()``."""

    def __init__(self, behaviour: Misbehaviour | None = None, *, port: int = 0) -> None:
        self.behaviour = behaviour or Misbehaviour()
        self.requested_port = port
        self.port = 0
        self.calls = 0
        self.received: list[Received] = []
        self.metadata: list[dict[str, str]] = []
        self.finished_calls = 0
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._server: grpc.aio.Server | None = None

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.port}"

    def settings(self, **overrides: Any) -> ChannelSettings:
        return ChannelSettings(target=self.target, **overrides)

    def tids_read(self, call: int | None = None) -> list[int]:
        with self._lock:
            return [r.tid for r in self.received if call is None or r.call == call]

    # -- the RPCs ---------------------------------------------------------------------

    async def _stream(self, request_iterator: Any, context: grpc.aio.ServicerContext) -> None:
        with self._lock:
            self.calls += 1
            call = self.calls
            self.metadata.append({k: str(v) for k, v in context.invocation_metadata() or ()})
        b = self.behaviour
        try:
            if call <= b.reject_first_calls:
                await context.abort(b.reject_code, f"rejected call {call} before reading")
            answered = 0
            pending: list[Any] = []

            async def answer(request: Any) -> None:
                nonlocal answered
                if b.fail_after_answers is not None and answered >= b.fail_after_answers:
                    await context.abort(b.fail_code, b.fail_details)
                if b.answer_delay_s:
                    await asyncio.sleep(b.answer_delay_s)
                tid = request.tid
                out = b.raw_out.get(tid, f"ran {request.cmd}\n".encode())
                if tid in b.out_size:
                    out = b"x" * b.out_size[tid]
                hsh = request.hsh.encode()
                await context.write(
                    encode_response(tid, b.rc.get(tid, 0), out, b.raw_err.get(tid, b""), hsh)
                )
                answered += 1
                if tid in b.repeat_tids:
                    await context.write(encode_response(tid, 99, b"second answer\n", b"", hsh))
                if answered == 1:
                    for unknown in b.unknown_tids:
                        await context.write(encode_response(unknown, 0, b"never asked\n"))
                    if b.flood_unknown is not None:
                        count, size = b.flood_unknown
                        body = b"f" * size
                        for n in range(count):  # bounded: count responses, then on
                            await context.write(encode_response(1_000_000 + n, 0, body, body))
                    if b.garbage_after_first:
                        await context.write(GARBAGE)

            while True:
                request = await context.read()
                if request is grpc.aio.EOF:
                    break
                with self._lock:
                    self.received.append(
                        Received(call, request.tid, request.cmd, request.hsh, request.src)
                    )
                    read_count = sum(1 for r in self.received if r.call == call)
                if b.fail_after_reading is not None and read_count >= b.fail_after_reading:
                    await context.abort(b.fail_code, b.fail_details)
                if b.never_answer or b.reverse:
                    pending.append(request)
                else:
                    await answer(request)
            if b.never_answer:
                await asyncio.sleep(_NEVER_S)
            for request in reversed(pending):
                await answer(request)
            if b.fail_after_answers is not None and answered >= b.fail_after_answers:
                await context.abort(b.fail_code, b.fail_details)
        finally:
            with self._lock:
                self.finished_calls += 1

    async def _ping(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        if self.behaviour.hang_unary:
            await asyncio.sleep(_NEVER_S)
        return wire.pb.PongMsg(seq=request.seq, time=request.time, data=request.data)

    async def _status(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        if self.behaviour.hang_unary:
            await asyncio.sleep(_NEVER_S)
        return wire.pb.StatusMsg(rc=0, msg=self.behaviour.status_msg)

    def _handlers(self) -> grpc.GenericRpcHandler:
        return grpc.method_handlers_generic_handler(
            wire.SERVICE,
            {
                "RemCmdStrm": grpc.stream_stream_rpc_method_handler(
                    self._stream,
                    request_deserializer=wire.pb.RemCmdMsg.FromString,
                    response_serializer=None,  # responses are pre-encoded bytes
                ),
                "Ping": grpc.unary_unary_rpc_method_handler(
                    self._ping,
                    request_deserializer=wire.pb.PingMsg.FromString,
                    response_serializer=wire.pb.PongMsg.SerializeToString,
                ),
                "GetStatus": grpc.unary_unary_rpc_method_handler(
                    self._status,
                    request_deserializer=wire.pb.Empty.FromString,
                    response_serializer=wire.pb.StatusMsg.SerializeToString,
                ),
            },
        )

    # -- lifecycle ----------------------------------------------------------------------

    def start(self) -> MisbehavingServer:
        loop = asyncio.new_event_loop()
        started: concurrent.futures.Future[int] = concurrent.futures.Future()

        async def boot() -> None:
            try:
                server = grpc.aio.server()
                server.add_generic_rpc_handlers((self._handlers(),))
                port = server.add_insecure_port(f"127.0.0.1:{self.requested_port}")
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

        self._thread = threading.Thread(target=run, name="misbehaving-server", daemon=True)
        self._thread.start()
        self._loop = loop
        self.port = started.result(timeout=_START_TIMEOUT_S)
        if not self.port:
            self.stop()
            raise RuntimeError(f"could not bind 127.0.0.1:{self.requested_port}")
        return self

    def stop(self, grace: float | None = 0.0) -> None:
        loop, thread, server = self._loop, self._thread, self._server
        if loop is None or thread is None:
            return
        if server is not None and not loop.is_closed():
            future = asyncio.run_coroutine_threadsafe(server.stop(grace), loop)
            future.result(timeout=_START_TIMEOUT_S)
        if not loop.is_closed():
            loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=_START_TIMEOUT_S)
        self._loop = self._thread = self._server = None

    def __enter__(self) -> MisbehavingServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
