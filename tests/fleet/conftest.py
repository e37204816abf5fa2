"""Simulated fleets: a few server processes, each serving several loopback addresses.

``fleet_group(hosts, role=...)`` starts one process of ``hosts`` reference servers on
fresh loopback addresses (127.0.N.1, 127.0.N.2, ...); the commands they run see
``FLEET_ROLE=<role>`` in their environment, so a test can make one group's hosts fail
(``test "$FLEET_ROLE" != failing``) while another's succeed, with the same batch.
"""

from __future__ import annotations

import itertools
import socket
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from support.server_group import ServerGroup, launch_group

# Each group gets its own 127.0.N.0/24, so groups of one session never collide.
_SUBNETS = itertools.count(40)

FleetGroup = Callable[..., ServerGroup]


@pytest.fixture
def fleet_group(tmp_path: Path) -> Iterator[FleetGroup]:
    started: list[ServerGroup] = []

    def start(hosts: int, role: str = "good", config_text: str | None = None) -> ServerGroup:
        subnet = next(_SUBNETS) % 250 + 2
        options = {} if config_text is None else {"config_text": config_text}
        group = launch_group(
            tmp_path / f"group-{len(started)}",
            hosts,
            f"127.0.{subnet}.1",
            env={"FLEET_ROLE": role},
            **options,
        )
        started.append(group)
        return group

    try:
        yield start
    finally:
        for group in started:
            group.close()


@pytest.fixture
def closed_targets() -> Callable[[int], list[str]]:
    """``closed_targets(n)``: loopback addresses with nothing listening (bound, then
    released): unreachable hosts."""

    def make(count: int) -> list[str]:
        found = []
        for _ in range(count):
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
                sock.bind(("127.0.0.1", 0))
                found.append(f"127.0.0.1:{sock.getsockname()[1]}")
        return found

    return make
