"""A RemSvc server that runs nothing: every command is answered at once with rc 0.

It is a diagnostic, not a product: against it, one stream's rate is the ceiling that
gRPC itself (client engine, HTTP/2 on loopback, grpc.aio server) puts on a stream, with
no process spawned. Comparing it with the real server's rate and with direct spawning
shows which of the two costs bounds a stream.

``python -m benchmarks.noop_server --port-file PATH`` binds 127.0.0.1 on an ephemeral
port, writes the port to PATH once serving, and stops on SIGTERM.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
from collections.abc import AsyncIterator
from typing import Any

import grpc.aio

from remsvc_core.wire import pb, pb_grpc


class NoopService(pb_grpc.RemSvcServicer):  # type: ignore[misc]
    async def RemCmdStrm(
        self, request_iterator: AsyncIterator[Any], context: Any
    ) -> AsyncIterator[Any]:
        async for request in request_iterator:
            yield pb.RemResMsg(rc=0, tid=request.tid, out="", err="", hsh=request.hsh)


def _write_port(path: str, port: int) -> None:
    with open(path, "w", encoding="ascii") as handle:
        handle.write(str(port))


async def serve(port_file: str) -> None:
    server = grpc.aio.server()
    pb_grpc.add_RemSvcServicer_to_server(NoopService(), server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    _write_port(port_file, port)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    await server.stop(1.0)


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.noop_server")
    parser.add_argument("--port-file", required=True)
    asyncio.run(serve(parser.parse_args().port_file))


if __name__ == "__main__":
    main()
