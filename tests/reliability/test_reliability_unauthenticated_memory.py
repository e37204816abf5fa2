"""Issue 12.2: callers without a token cannot make the server hold their requests.

With ``[auth]`` on, a request is still received and parsed before its token is
looked at. The receive limit was 64 MiB: 16 callers without a token sending 64 MiB
each made the server grow by 2.3 GiB. Now the limit is what a command can be (the
operating system's limit on one argument, twice, plus room), and the server stops
reading an oversized message at its first bytes. 24 such callers at once, half
unary and half streaming, must leave the server's peak memory (read from /proc
every 20 ms) within a few MiB of where it was.
"""

from __future__ import annotations

import threading
import time
from collections import Counter

import grpc
import pytest
from procfs_probe import snapshot

from remsvc_core.server.grpc_options import longest_command, request_limit
from remsvc_core.wire import pb, pb_grpc

pytestmark = [pytest.mark.reliability, pytest.mark.slow, pytest.mark.timeout(180)]

TOKEN = "tok-memory-test-5b1e0c9d2f7a"
CALLERS = 24
# Just under the 64 MiB the server used to accept, so the old server read each whole.
OVERSIZED = 63 * 1024 * 1024
# Generous: the default 64 KiB windows of 24 connections, and the allocator's slack.
GROWTH_BOUND = 48 * 1024 * 1024


class PeakMemory:
    """Samples a process's RSS from a thread until stopped; ``peak`` is the highest seen."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.peak = snapshot(pid).rss_bytes
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> PeakMemory:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, snapshot(self.pid).rss_bytes)
            self._stop.wait(0.02)


def oversized_call(target: str, payload: bytes, streaming: bool) -> str:
    """Send one oversized RemCmdMsg without a token; the status code that came back."""
    options = [("grpc.max_send_message_length", -1)]
    with grpc.insecure_channel(target, options=options) as channel:
        try:
            if streaming:
                call = channel.stream_stream("/RS.RemSvc/RemCmdStrm")
                for _ in call(iter([payload]), timeout=60):
                    pass
            else:
                channel.unary_unary("/RS.RemSvc/RemCmd")(payload, timeout=60)
        except grpc.RpcError as error:
            return error.code().name
    return "OK"


def test_oversized_requests_without_a_token_leave_memory_flat(server_process, figures):
    server = server_process(auth={"ops": TOKEN})
    metadata = [("authorization", f"Bearer {TOKEN}")]
    with grpc.insecure_channel(server.target) as channel:
        stub = pb_grpc.RemSvcStub(channel)
        assert stub.RemCmd(pb.RemCmdMsg(cmd="echo warm", tid=1), metadata=metadata).out == "warm\n"
    time.sleep(0.5)
    baseline = snapshot(server.pid).rss_bytes
    # Serialized once and shared: the client must not need gigabytes for this.
    payload = pb.RemCmdMsg(cmd="x" * OVERSIZED, tid=1).SerializeToString()

    codes: Counter[str] = Counter()

    def caller(streaming: bool) -> None:
        codes.update([oversized_call(server.target, payload, streaming)])

    with PeakMemory(server.pid) as memory:
        callers = [threading.Thread(target=caller, args=(n % 2 == 1,)) for n in range(CALLERS)]
        for caller in callers:
            caller.start()
        for caller in callers:
            caller.join(timeout=120)
        time.sleep(0.5)
    growth = memory.peak - baseline
    figures.tried("oversized requests without a token", CALLERS)
    figures.note(
        f"{CALLERS} x 63 MiB requests without a token: server RSS {baseline >> 20} MiB -> "
        f"peak {memory.peak >> 20} MiB (+{growth / (1 << 20):.1f} MiB; receive limit "
        f"{request_limit() >> 10} KiB)"
    )
    assert sum(codes.values()) == CALLERS
    assert set(codes) <= {"UNAUTHENTICATED", "RESOURCE_EXHAUSTED"}, codes
    assert growth < GROWTH_BOUND, f"the server grew by {growth >> 20} MiB"

    # The server is unharmed, and a caller with a token learns the limit by name.
    with grpc.insecure_channel(server.target, options=[("grpc.max_send_message_length", -1)]) as ch:
        stub = pb_grpc.RemSvcStub(ch)
        assert stub.RemCmd(pb.RemCmdMsg(cmd="echo ok", tid=2), metadata=metadata).out == "ok\n"
        with pytest.raises(grpc.RpcError) as refused:
            stub.RemCmd(pb.RemCmdMsg(cmd="y" * OVERSIZED, tid=3), metadata=metadata, timeout=60)
    assert refused.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert str(request_limit()) in (refused.value.details() or "")


def test_the_longest_command_that_can_run_still_fits(server_process, figures):
    """The limit refuses nothing that could have run: a command of the most bytes
    the operating system takes as one argument runs."""
    server = server_process()
    longest = longest_command() - 1  # the argument's terminating NUL counts
    command = "true " + "x" * (longest - len("true "))
    with grpc.insecure_channel(server.target) as channel:
        reply = pb_grpc.RemSvcStub(channel).RemCmd(pb.RemCmdMsg(cmd=command, tid=1), timeout=60)
    figures.tried("the longest command that can run")
    assert (reply.rc, reply.err) == (0, "")
