"""Pinging a server from a thread of its own while something else happens to it.

How responsive a server stays is what its event loop shows: Ping is answered there
and nowhere else. The watch sends one Ping at a time over its own channel, each with
a deadline (3 s: a hundred times what a responsive server needs on a busy
machine), and records how long each round trip took and how many got no
answer at all. The pace is bounded (one every ``interval``), and so is its life.
"""

from __future__ import annotations

import threading
import time

import grpc

from remsvc_core.wire import pb, pb_grpc

__all__ = ["PingWatch"]


class PingWatch:
    """``with PingWatch(target) as watch: ...``; then ``watch.worst_s``, ``watch.failed``."""

    def __init__(self, target: str, *, interval: float = 0.05, deadline: float = 3.0) -> None:
        self.target = target
        self.interval = interval
        self.deadline = deadline
        self.latencies: list[float] = []
        self.failed: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="ping-watch", daemon=True)

    def __enter__(self) -> PingWatch:
        self._channel = grpc.insecure_channel(self.target)
        self._stub = pb_grpc.RemSvcStub(self._channel)
        # Connected (and answered once) before anything is timed.
        self._stub.Ping(pb.PingMsg(seq=0), timeout=30.0)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=self.deadline + 5)
        self._channel.close()

    @property
    def worst_s(self) -> float:
        return max(self.latencies, default=0.0)

    @property
    def sent(self) -> int:
        return len(self.latencies) + len(self.failed)

    def _run(self) -> None:
        seq = 1
        while not self._stop.is_set():
            began = time.monotonic()
            try:
                self._stub.Ping(pb.PingMsg(seq=seq), timeout=self.deadline)
            except grpc.RpcError as error:
                self.failed.append(f"{error.code().name}: {error.details()}")
            else:
                self.latencies.append(time.monotonic() - began)
            seq += 1
            self._stop.wait(self.interval)
