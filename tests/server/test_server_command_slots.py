"""Command slots (``[limits]`` max_commands) handed out in process: first come, first
served, an identity at its own limit letting the next caller through, and a caller
that gives up leaving nothing behind. The real-server behaviour is in
test_server_limits.py; this pins the order, which a server run cannot show exactly."""

from __future__ import annotations

import asyncio

import pytest

from remsvc_core.server.config import ServerConfig
from remsvc_core.server.limits import Limits


def test_freed_slots_go_to_the_longest_waiting_caller_that_can_use_them() -> None:
    async def scenario() -> list[str]:
        limits = Limits(ServerConfig(max_commands=2, identity_max_commands=1))
        a, b = limits.slots("a"), limits.slots("b")
        assert a.try_acquire()
        assert b.try_acquire()
        order: list[str] = []
        limits.slots("a").wait_turn(lambda: order.append("a, second"))  # a is at its limit
        limits.slots("c").wait_turn(lambda: order.append("c"))
        limits.slots("d").wait_turn(lambda: order.append("d"))
        assert not limits.slots("e").try_acquire()  # full: no jumping the queue
        b.release()  # a's waiter cannot use it (a is full): c, who came next, can
        await asyncio.sleep(0)
        assert order == ["c"]
        a.release()
        await asyncio.sleep(0)
        assert limits.commands_running == 2
        assert limits.commands_waiting == 1
        return order

    assert asyncio.run(scenario()) == ["c", "a, second"]


def test_a_cancelled_wait_takes_no_slot() -> None:
    async def scenario() -> int:
        limits = Limits(ServerConfig(max_commands=1))
        holder = limits.slots("a")
        assert holder.try_acquire()
        waiter = asyncio.create_task(limits.slots("b").acquire())
        await asyncio.sleep(0)
        waiter.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiter
        holder.release()
        await asyncio.sleep(0)
        assert limits.commands_waiting == 0
        return limits.commands_running

    assert asyncio.run(scenario()) == 0


def test_a_slot_handed_over_as_the_caller_gives_up_is_passed_on() -> None:
    async def scenario() -> tuple[int, bool]:
        limits = Limits(ServerConfig(max_commands=1))
        holder = limits.slots("a")
        assert holder.try_acquire()
        waiter = asyncio.create_task(limits.slots("b").acquire())
        await asyncio.sleep(0)
        holder.release()  # handed to b's wait, which is cancelled before it runs
        waiter.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiter
        await asyncio.sleep(0)
        return limits.commands_running, limits.slots("c").try_acquire()

    assert asyncio.run(scenario()) == (0, True)
