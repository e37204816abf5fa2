"""The write window: at most 256 commands unanswered, refilled in bursts at half.

Waking the writer for every answer made it write one command per event-loop pass,
the largest part of the engine's client CPU; the writer now waits until answers
bring the window down to its low-water mark (128 unanswered) and refills it at once.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import grpc
import grpc.aio
import pytest

from remsvc_core import engine, wire
from remsvc_core.engine import NO_RETRY, run_commands
from remsvc_core.plugins import StreamHooks
from remsvc_core.settings import ChannelSettings

WINDOW = 256
LOW_WATER = 128


class RecordingCall:
    """Stands in for a grpc.aio stream call in the policy test below (a real call
    cannot be held at the moment an answer arrives): it records every write."""

    def __init__(self) -> None:
        self.written: list[int] = []
        self.finished_writing = False

    def done(self) -> bool:
        return False

    async def write(self, data: bytes) -> None:
        self.written.append(wire.pb.RemCmdMsg.FromString(data).tid)

    async def done_writing(self) -> None:
        self.finished_writing = True


async def _settle() -> None:
    for _ in range(20):  # a bounded number of event-loop passes for the writer to run
        await asyncio.sleep(0)


async def test_writer_refills_only_at_the_low_water_mark() -> None:
    batch, encoded = engine._as_batch([f"echo {i}" for i in range(600)], "")
    stream = engine._Stream(
        batch,
        encoded,
        ChannelSettings(target="127.0.0.1:1"),
        (),
        60.0,
        NO_RETRY,
        StreamHooks(),
    )
    call = RecordingCall()
    writer = asyncio.create_task(stream._write_all(call, engine._StatusWatch(_NoCall())))
    try:
        await _settle()
        assert call.written == list(range(1, WINDOW + 1))

        def answer(tid: int) -> None:
            stream._accept((tid, 0, "", "", "", False))

        for tid in range(1, WINDOW - LOW_WATER):  # down to 129 unanswered
            answer(tid)
            await _settle()
        assert call.written == list(range(1, WINDOW + 1))  # no write per answer

        answer(WINDOW - LOW_WATER)  # 128 unanswered: one burst refills the window
        await _settle()
        assert call.written == list(range(1, WINDOW + LOW_WATER + 1))
        assert len(stream.in_flight) == WINDOW

        for _ in range(10):  # answer everything written, until the batch is out
            for tid in sorted(stream.in_flight):
                answer(tid)
                await _settle()
            if call.finished_writing:
                break
        assert call.written == list(range(1, 601))
        assert call.finished_writing
        assert stream.outcome.unexpected == []
    finally:
        writer.cancel()  # finished already, unless an assert above failed
        with contextlib.suppress(asyncio.CancelledError):
            await writer


class _NoCall:
    """The status watch of the policy test watches nothing."""

    def add_done_callback(self, callback: Any) -> None:
        pass

    def done(self) -> bool:
        return True


class HoldingServer:
    """Reads every command; once it has read ``WINDOW`` of them, answers the first
    ``answer_count`` and then nothing more. A real grpc.aio server on loopback."""

    def __init__(self, answer_count: int) -> None:
        self.answer_count = answer_count
        self.read: list[int] = []
        self.server = grpc.aio.server()
        self.server.add_generic_rpc_handlers(
            (
                grpc.method_handlers_generic_handler(
                    wire.SERVICE,
                    {
                        "RemCmdStrm": grpc.stream_stream_rpc_method_handler(
                            self._stream,
                            request_deserializer=wire.pb.RemCmdMsg.FromString,
                            response_serializer=wire.pb.RemResMsg.SerializeToString,
                        )
                    },
                ),
            )
        )
        self.port = self.server.add_insecure_port("127.0.0.1:0")

    async def _stream(self, requests: AsyncIterator[Any], context: Any) -> AsyncIterator[Any]:
        async for request in requests:
            self.read.append(request.tid)
            if len(self.read) == WINDOW:
                for tid in self.read[: self.answer_count]:
                    yield wire.pb.RemResMsg(tid=tid, out="done\n")

    def settings(self) -> ChannelSettings:
        return ChannelSettings(target=f"127.0.0.1:{self.port}")


@pytest.fixture
def patience(monkeypatch: pytest.MonkeyPatch) -> None:
    # A tuning knob, not a mock: the spell without answers after which the writer
    # gives up the window, shortened so the stream below runs well past it.
    monkeypatch.setattr(engine, "_FIRST_ANSWER_PATIENCE_S", 0.3)


@pytest.mark.parametrize("answer_count", [5, 127])
@pytest.mark.usefixtures("patience")
async def test_slow_answers_do_not_make_the_writer_give_up_the_window(
    answer_count: int,
) -> None:
    """Answers that came, but too few to reach the low-water mark within the
    first-answer patience, mean a slow server: the window stays (only a server that
    answered nothing at all gets the rest of the batch regardless)."""
    holding = HoldingServer(answer_count)
    await holding.server.start()
    try:
        commands = [f"echo {i}" for i in range(1000)]

        outcome = await run_commands(commands, holding.settings(), stream_timeout=2.0)
    finally:
        await holding.server.stop(0)

    assert outcome.status_code == "DEADLINE_EXCEEDED"
    assert sorted(outcome.results) == list(range(1, answer_count + 1))
    # The answers may arrive while the writer still finishes the first 256 writes;
    # then it keeps up to 256 unanswered, never more.
    read = len(holding.read)
    assert WINDOW <= read <= WINDOW + answer_count
    assert holding.read == list(range(1, read + 1))
