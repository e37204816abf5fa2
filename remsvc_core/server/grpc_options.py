"""How the reference server configures gRPC Core, and why each setting is what it is.

Three of gRPC's defaults do not fit a server that runs commands for callers who may
not even have a token yet:

* **The receive limit.** Everything a caller sends is a command (or a Ping, or a
  health check), and a command longer than the operating system lets one argument
  be can never run (see :func:`longest_command`). gRPC reads a request whole, and
  before the token is checked; a 64 MiB limit let 16 callers without a token make
  the server hold 2.3 GiB. The limit is now what a command can be, with room.
* **BDP probing** grows each connection's receive window (to several MiB) so that
  large uploads go fast. The server only ever receives small requests, so it gains
  nothing, and a caller streaming an oversized message (refused, but only once its
  first bytes arrive) got that much buffered per connection. Turned off, a refused
  message costs the default 64 KiB window. (What the server *sends*, the outputs, is
  paced by the client's window, which this does not touch.)
* **Unrequested calls.** gRPC Core holds calls the application has not picked up yet
  in a queue, and silently cancels those that waited longer than
  ``grpc.server_max_unrequested_time_in_server`` (30 s by default) when the
  application next asks for a call. grpc.aio picks calls up one at a time, on the
  event loop: under load (200 streams starting together on a busy machine), the
  last ones waited past 30 s and were dropped, CANCELLED, none of their commands
  ever seen. A call now waits as long as its caller's deadline allows: the server
  is slow, but the caller gets its results, or DEADLINE_EXCEEDED, which says so.
"""

from __future__ import annotations

import os
import sys

from remsvc_core.server.capture import CLASSIC_CAP
from remsvc_core.server.config import ServerConfig
from remsvc_core.settings import MIN_KEEPALIVE_S

__all__ = ["longest_command", "request_limit", "response_limit", "server_options"]

# Room for stdout and stderr at the cap, even if every byte became U+FFFD (3 bytes).
_RESPONSE_FLOOR = 64 * 1024 * 1024
# What a request holds besides the command (src, cmdusr, hsh, tid) and protobuf framing.
_REQUEST_OVERHEAD = 64 * 1024
# A queued call waits until its caller's deadline; this only has to be longer than any.
_UNREQUESTED_FOREVER_S = 10 * 365 * 24 * 3600


def longest_command() -> int:
    """The most bytes a command can have and still be started.

    The command is one argument of ``/bin/sh -c`` (or ``pwsh -Command``). Linux
    limits one argument to MAX_ARG_STRLEN, 32 pages (128 KiB with 4 KiB pages), and
    all of argv and the environment together to ARG_MAX; other systems have ARG_MAX
    only.
    """
    try:
        arg_max = int(os.sysconf("SC_ARG_MAX"))
    except (AttributeError, ValueError, OSError):  # pragma: no cover - no sysconf
        arg_max = 256 * 1024
    if arg_max <= 0:  # pragma: no cover - "no limit"
        arg_max = 256 * 1024
    if sys.platform.startswith("linux"):
        return min(arg_max, 32 * os.sysconf("SC_PAGE_SIZE"))
    return arg_max  # pragma: no cover - not Linux


def request_limit() -> int:
    """The server's receive limit: twice the longest command, plus the other fields.

    Twice, so that a command somewhat too long still gets the answer upstream gives
    (rc 127, "Argument list too long") rather than a refused call; past that the
    call fails with RESOURCE_EXHAUSTED, before the message is read whole.
    """
    return 2 * longest_command() + _REQUEST_OVERHEAD


def response_limit(config: ServerConfig) -> int:
    """The send limit: a response with both outputs at the cap always fits."""
    cap = min(config.output_cap_bytes, CLASSIC_CAP)  # a classic result never carries more
    return max(_RESPONSE_FLOOR, 6 * cap + (1 << 20))


def server_options(config: ServerConfig) -> list[tuple[str, int]]:
    """The channel arguments the server is started with (see the module docstring)."""
    return [
        ("grpc.max_send_message_length", response_limit(config)),
        ("grpc.max_receive_message_length", request_limit()),
        ("grpc.http2.bdp_probe", 0),
        ("grpc.server_max_unrequested_time_in_server", _UNREQUESTED_FOREVER_S),
        # Two servers on one fixed port must be an error, not a silent split.
        ("grpc.so_reuseport", 0),
        # Clients keep a silent command's stream alive through proxies with pings as
        # often as every MIN_KEEPALIVE_S (their keepalive_s floor), where gRPC's default
        # policy answers more than one per 5 minutes with GOAWAY "too_many_pings". Half
        # the floor: timers may fire a little early.
        ("grpc.http2.min_ping_interval_without_data_ms", MIN_KEEPALIVE_S * 500),
    ]
