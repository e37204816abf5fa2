"""The server's background log writer: every line arrives, in order, and nothing is lost
when it stops."""

from __future__ import annotations

import io
import logging
import threading

from server_waits import wait_for_text

from remsvc_core.server.logs import BackgroundLog


def stream_handler() -> tuple[logging.StreamHandler[io.StringIO], io.StringIO]:
    buffer = io.StringIO()
    handler = logging.StreamHandler(buffer)
    handler.setFormatter(logging.Formatter("%(name)s %(levelname)s %(message)s"))
    return handler, buffer


def test_every_line_arrives_in_order_and_close_writes_out_the_rest():
    handler, buffer = stream_handler()
    background = BackgroundLog(handler, interval=0.01)
    logger = logging.getLogger("remsvc.test.background")
    logger.propagate = False
    logger.setLevel(logging.INFO)
    logger.addHandler(background.handler)
    try:
        for number in range(500):
            logger.info("line %d of %s", number, "many")
        # The thread writes on its own, without close(), within a bounded time.
        assert "line 499 of many" in wait_for_text(buffer.getvalue, "line 499 of many")
        for number in range(500, 1000):
            logger.info("line %d of %s", number, "many")
    finally:
        logger.removeHandler(background.handler)
        background.close()  # writes out what was still pending
    lines = buffer.getvalue().splitlines()
    assert lines == [f"remsvc.test.background INFO line {n} of many" for n in range(1000)]


def test_arguments_are_merged_when_logged_not_when_written():
    handler, buffer = stream_handler()
    background = BackgroundLog(handler, interval=0.05)
    logger = logging.getLogger("remsvc.test.arguments")
    logger.propagate = False
    logger.addHandler(background.handler)
    changing = ["before"]
    try:
        logger.warning("saw %s", changing)
        changing[0] = "after"  # the thread has not written it yet (interval 50 ms)
    finally:
        logger.removeHandler(background.handler)
        background.close()
    assert buffer.getvalue() == "remsvc.test.arguments WARNING saw ['before']\n"


def test_removing_a_target_first_writes_what_it_was_owed():
    first, first_buffer = stream_handler()
    second, second_buffer = stream_handler()
    background = BackgroundLog(first, interval=10.0)  # the thread would not get to it
    logger = logging.getLogger("remsvc.test.targets")
    logger.propagate = False
    logger.addHandler(background.handler)
    try:
        background.add_target(second)
        logger.warning("for both")
        background.remove_target(second)
        logger.warning("for the first only")
        assert second_buffer.getvalue() == "remsvc.test.targets WARNING for both\n"
    finally:
        logger.removeHandler(background.handler)
        background.close()
    assert first_buffer.getvalue().splitlines() == [
        "remsvc.test.targets WARNING for both",
        "remsvc.test.targets WARNING for the first only",
    ]


def test_lines_from_many_threads_all_arrive():
    handler, buffer = stream_handler()
    background = BackgroundLog(handler, interval=0.005)
    logger = logging.getLogger("remsvc.test.threads")
    logger.propagate = False
    logger.addHandler(background.handler)

    def emit(worker: int) -> None:
        for number in range(200):
            logger.warning("w%d n%d", worker, number)

    workers = [threading.Thread(target=emit, args=(w,)) for w in range(4)]
    try:
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join(timeout=30)
    finally:
        logger.removeHandler(background.handler)
        background.close()
    lines = buffer.getvalue().splitlines()
    assert len(lines) == 800
    for w in range(4):  # each thread's lines stay in its order
        mine = [line for line in lines if f" w{w} " in line]
        assert mine == [f"remsvc.test.threads WARNING w{w} n{n}" for n in range(200)]
