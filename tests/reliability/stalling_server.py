"""The reference server in a process of its own whose event loop can be stalled on purpose.

``python stalling_server.py --port-file PATH --stall-s N [--unrequested-s M]``

It runs the real server (``start_server``) with the options the server chooses for
gRPC Core; on SIGUSR1 its event loop sleeps ``N`` seconds (a deliberately busy loop:
to gRPC Core that is a server too slow to pick up new calls). With
``--unrequested-s``, ``grpc.server_max_unrequested_time_in_server`` is set to ``M``
instead of the server's choice, to show what gRPC Core does with calls that waited
longer than that. SIGTERM stops it.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import time
from pathlib import Path

from remsvc_core.server import app
from remsvc_core.server.config import ServerConfig

UNREQUESTED = "grpc.server_max_unrequested_time_in_server"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port-file", required=True)
    parser.add_argument("--stall-s", type=float, required=True)
    parser.add_argument("--unrequested-s", type=int)
    args = parser.parse_args()
    if args.unrequested_s is not None:
        chosen = app.server_options

        def options(config: ServerConfig) -> list[tuple[str, int]]:
            return [
                (name, args.unrequested_s if name == UNREQUESTED else value)
                for name, value in chosen(config)
            ]

        app.server_options = options  # type: ignore[assignment]
    asyncio.run(serve(args.port_file, args.stall_s))


async def serve(port_file: str, stall_s: float) -> None:
    running = await app.start_server(ServerConfig(port=0, source="<stalling_server>"))
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    # Blocking the loop is the point: this is what a server too busy to pick up calls is.
    loop.add_signal_handler(signal.SIGUSR1, time.sleep, stall_s)
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    write_port(port_file, running.port)
    await stop.wait()
    await running.stop(0)


def write_port(port_file: str, port: int) -> None:
    Path(port_file + ".tmp").write_text(f"{port}\n")
    os.replace(port_file + ".tmp", port_file)


if __name__ == "__main__":
    main()
