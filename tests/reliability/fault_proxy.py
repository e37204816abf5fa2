"""A loopback TCP proxy the test controls: forward, then drop, stall or half-close.

It sits between a client and a real server (``client -> proxy -> server``) and moves
bytes both ways on plain threads, so faults can be injected from any thread at any
moment, for example from a plugin hook the engine calls when result *k* arrives:

* :meth:`FaultProxy.drop` resets every open connection (``SO_LINGER`` 0, so the peers
  see RST, not an orderly close): a cable pulled, a NAT entry flushed.
* :meth:`FaultProxy.stall` stops forwarding in both directions while keeping the
  sockets open: a peer that vanished without closing (no RST, no FIN ever arrives).
* :meth:`FaultProxy.half_close` sends FIN one way (``to_client`` or ``to_server``) and
  stops forwarding that way; the other direction keeps flowing.

Every loop is bounded by the sockets' lifetime; :meth:`close` ends them all.
"""

from __future__ import annotations

import contextlib
import socket
import struct
import threading
from dataclasses import dataclass, field
from types import TracebackType

__all__ = ["FaultProxy"]

_CHUNK = 65536
_POLL_S = 0.05
DIRECTIONS = ("to_client", "to_server")


@dataclass
class _Pair:
    client: socket.socket
    server: socket.socket
    # Set once that direction must not carry another byte.
    stopped: dict[str, threading.Event] = field(
        default_factory=lambda: {d: threading.Event() for d in DIRECTIONS}
    )


class FaultProxy:
    """``with FaultProxy(("127.0.0.1", server_port)) as proxy: connect to proxy.target``."""

    def __init__(self, upstream: tuple[str, int]) -> None:
        self.upstream = upstream
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.settimeout(_POLL_S)
        self.port: int = self._listener.getsockname()[1]
        self._pairs: list[_Pair] = []
        self._lock = threading.Lock()
        self._closed = threading.Event()
        self._stalled = threading.Event()
        self._threads: list[threading.Thread] = []
        self.connections = 0
        self.bytes = {d: 0 for d in DIRECTIONS}
        self.faults: list[str] = []

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.port}"

    # -- faults --------------------------------------------------------------------

    def drop(self) -> None:
        """Reset every open connection (both peers see RST)."""
        self.faults.append("drop")
        with self._lock:
            pairs, self._pairs = self._pairs, []
        for pair in pairs:
            for sock in (pair.client, pair.server):
                _reset(sock)

    def stall(self) -> None:
        """Stop moving bytes either way; the sockets stay open until :meth:`close`."""
        self.faults.append("stall")
        self._stalled.set()

    def half_close(self, direction: str) -> None:
        """Send FIN towards one peer (``to_client`` or ``to_server``) and stop that way."""
        if direction not in DIRECTIONS:
            raise ValueError(f"direction must be one of {DIRECTIONS}, got {direction!r}")
        self.faults.append(f"half-close {direction}")
        with self._lock:
            pairs = list(self._pairs)
        for pair in pairs:
            pair.stopped[direction].set()
            sock = pair.client if direction == "to_client" else pair.server
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_WR)

    # -- plumbing ------------------------------------------------------------------

    def start(self) -> FaultProxy:
        self._spawn(self._accept_loop, "fault-proxy-accept")
        return self

    def _spawn(self, target: object, name: str, *args: object) -> None:
        thread = threading.Thread(target=target, args=args, name=name, daemon=True)  # type: ignore[arg-type]
        thread.start()
        self._threads.append(thread)

    def _accept_loop(self) -> None:
        while not self._closed.is_set():
            try:
                client, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            try:
                server = socket.create_connection(self.upstream, timeout=5.0)
            except OSError:
                _reset(client)
                continue
            for sock in (client, server):
                sock.settimeout(_POLL_S)
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            pair = _Pair(client, server)
            with self._lock:
                self._pairs.append(pair)
                self.connections += 1
            self._spawn(self._pump, "fault-proxy-up", pair, client, server, "to_server")
            self._spawn(self._pump, "fault-proxy-down", pair, server, client, "to_client")

    def _pump(
        self, pair: _Pair, source: socket.socket, sink: socket.socket, direction: str
    ) -> None:
        stopped = pair.stopped[direction]
        while not self._closed.is_set():
            if self._stalled.is_set() or stopped.is_set():
                # Hold the bytes where they are: nothing is read, nothing is closed.
                self._closed.wait(_POLL_S)
                continue
            try:
                data = source.recv(_CHUNK)
            except TimeoutError:
                continue
            except OSError:
                break
            if self._stalled.is_set() or stopped.is_set():
                continue  # the fault came while reading: these bytes never arrive
            if not data:
                with contextlib.suppress(OSError):
                    sink.shutdown(socket.SHUT_WR)
                break
            try:
                sink.sendall(data)
            except OSError:
                break
            with self._lock:
                self.bytes[direction] += len(data)

    def close(self) -> None:
        """Close the listener and every connection, and wait (bounded) for the threads."""
        self._closed.set()
        with contextlib.suppress(OSError):
            self._listener.close()
        with self._lock:
            pairs, self._pairs = self._pairs, []
        for pair in pairs:
            for sock in (pair.client, pair.server):
                with contextlib.suppress(OSError):
                    sock.close()
        for thread in self._threads:
            thread.join(timeout=5.0)

    def __enter__(self) -> FaultProxy:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def _reset(sock: socket.socket) -> None:
    """Close with an RST instead of a FIN."""
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    with contextlib.suppress(OSError):
        sock.close()
