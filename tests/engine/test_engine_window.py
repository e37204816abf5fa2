"""The write window: at most 256 commands unanswered, refilled in bursts at half.

Waking the writer for every answer made it write one command per event-loop pass,
the largest part of the engine's client CPU; the writer now waits until answers
bring the window down to its low-water mark (128 unanswered) and refills it at once.
The window is tested directly here, then in a real stream against a real server.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import grpc
import grpc.aio
import pytest

from remsvc_core import send_window, wire
from remsvc_core.engine import run_commands
from remsvc_core.send_window import SendWindow
from remsvc_core.settings import ChannelSettings

WINDOW = 256
LOW_WATER = 128


async def _settle() -> None:
    for _ in range(20):  # a bounded number of event-loop passes for a waiter to run
        await asyncio.sleep(0)


class Writer:
    """Writes tids 1..n through a window the way the engine's writer does: asks for
    room, waits when there is none, reports each write."""

    def __init__(self, window: SendWindow, n: int, size: int = 20) -> None:
        self.window = window
        self.written: list[int] = []
        self.task = asyncio.create_task(self._write(n, size))

    async def _write(self, n: int, size: int) -> None:
        for tid in range(1, n + 1):
            if not self.window.has_room(size):
                await self.window.wait_for_room(size)
            self.window.sent(tid, size)
            self.written.append(tid)

    async def close(self) -> None:
        self.task.cancel()  # finished already, unless an assert failed
        with contextlib.suppress(asyncio.CancelledError):
            await self.task


async def test_writer_refills_only_at_the_low_water_mark() -> None:
    window = SendWindow()
    writer = Writer(window, 600)
    try:
        await _settle()
        assert writer.written == list(range(1, WINDOW + 1))

        for tid in range(1, WINDOW - LOW_WATER):  # down to 129 unanswered
            window.answered(tid)
            await _settle()
        assert writer.written == list(range(1, WINDOW + 1))  # no write per answer

        window.answered(WINDOW - LOW_WATER)  # 128 unanswered: one burst refills the window
        await _settle()
        assert writer.written == list(range(1, WINDOW + LOW_WATER + 1))
        assert window.in_flight == WINDOW

        answered = WINDOW - LOW_WATER
        while not writer.task.done() and answered < 600:  # bounded: one answer per tid
            answered += 1
            window.answered(answered)
            await _settle()
        assert writer.written == list(range(1, 601))
    finally:
        await writer.close()


async def test_bytes_bound_the_window_as_well_as_commands() -> None:
    window = SendWindow(max_commands=100, max_bytes=1000)
    writer = Writer(window, 50, size=300)
    try:
        await _settle()
        assert writer.written == [1, 2, 3]  # a fourth would pass 1000 bytes
        window.answered(1)  # 600 bytes left in flight: above the low water (500)
        await _settle()
        assert writer.written == [1, 2, 3]
        window.answered(2)  # 300 bytes: refill
        await _settle()
        assert writer.written == [1, 2, 3, 4, 5]
    finally:
        await writer.close()


async def test_a_command_larger_than_the_window_still_goes_alone() -> None:
    window = SendWindow(max_bytes=100)
    assert window.has_room(10_000)  # nothing in flight: any size may go
    window.sent(1, 10_000)
    assert not window.has_room(1)


async def test_answers_for_unknown_tids_count_as_hearing_from_the_server() -> None:
    """A server that answers, even with tids we never sent, is not silent: the writer
    keeps its window instead of giving it up after the patience."""
    window = SendWindow(max_commands=2, patience_s=0.05)
    writer = Writer(window, 5)
    try:
        window.answered(None)
        await asyncio.sleep(0.3)  # well past the patience
        assert writer.written == [1, 2]
        assert not window.unbounded
    finally:
        await writer.close()


async def test_a_silent_server_gets_the_rest_after_the_patience() -> None:
    window = SendWindow(max_commands=2, patience_s=0.05)
    writer = Writer(window, 5)
    try:
        await asyncio.wait_for(writer.task, 10)  # bounded: the patience is 0.05 s
        assert writer.written == [1, 2, 3, 4, 5]
        assert window.unbounded
    finally:
        await writer.close()


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
    monkeypatch.setattr(send_window, "FIRST_ANSWER_PATIENCE_S", 0.3)


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
