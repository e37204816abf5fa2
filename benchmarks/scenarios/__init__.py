"""The scenarios of issue #7 (and #16's fan-out), each a module with ``KEY``, ``TITLE``
and ``run(ctx)``.

:class:`Sizes` holds every count a scenario uses, per mode, so the full, quick and
smoke runs measure the same things at different sizes.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from types import ModuleType


@dataclass(frozen=True)
class Sizes:
    rounds: int
    throughput_n: int
    parallel_levels: tuple[int, ...]
    cost_n: dict[int, int]  # output bytes per result -> results in the stream
    cost_rounds: int  # CPU differences of ~10 µs need more rounds than wall times
    stream_counts: tuple[int, ...]
    per_stream: int
    large_mib: tuple[int, ...]
    large_rounds: int
    handler_n: int
    handler_repeat: int
    ssh_n: int
    ssh_default_n: int  # paramiko as it comes is slow (~40 ms a command): fewer
    ssh_new_connection_n: int
    fleet_engine_hosts: tuple[int, ...] = (100, 1000)  # hosts of one fan-out, engine only
    fleet_hosts: int = 200  # fan-out task vs as many mapped task instances, in Airflow
    fleet_memory_hosts: int = 1000  # through one triggerer
    fleet_rounds: int = 2
    fleet_airflow: bool = True
    notes: list[str] = field(default_factory=list)


MODES: dict[str, Sizes] = {
    "full": Sizes(
        rounds=3,
        throughput_n=2000,
        parallel_levels=(2, 4),
        cost_n={100: 2000, 10 * 1024: 1000, 256 * 1024: 200},
        cost_rounds=5,
        stream_counts=(100, 500, 1000),
        per_stream=5,
        large_mib=(1, 16, 64),
        large_rounds=3,
        handler_n=100_000,
        handler_repeat=3,
        ssh_n=2000,
        ssh_default_n=2000,
        ssh_new_connection_n=100,
    ),
    "quick": Sizes(
        rounds=2,
        throughput_n=300,
        parallel_levels=(2, 4),
        cost_n={100: 500, 10 * 1024: 300, 256 * 1024: 50},
        cost_rounds=3,
        stream_counts=(100, 1000),
        per_stream=5,
        large_mib=(1, 16),
        large_rounds=1,
        handler_n=100_000,
        handler_repeat=2,
        ssh_n=300,
        ssh_default_n=60,
        ssh_new_connection_n=20,
        fleet_hosts=30,
        fleet_memory_hosts=200,
        fleet_rounds=1,
        notes=["quick mode: smaller counts than issues #7 and #16 ask for; the full mode has them"],
    ),
    "smoke": Sizes(
        rounds=1,
        throughput_n=40,
        parallel_levels=(4,),
        cost_n={100: 40, 256 * 1024: 5},
        cost_rounds=1,
        stream_counts=(10, 30),
        per_stream=5,
        large_mib=(1,),
        large_rounds=1,
        handler_n=2_000,
        handler_repeat=1,
        ssh_n=20,
        ssh_default_n=10,
        ssh_new_connection_n=3,
        fleet_engine_hosts=(10, 30),
        fleet_airflow=False,
        notes=["smoke mode: only checks that every scenario runs; its figures mean nothing"],
    ),
}


@dataclass
class Context:
    mode: str
    sizes: Sizes
    workdir: str
    install_sshd: bool = False
    compare_original: bool = False

    def log(self, message: str) -> None:
        print(f"[benchmarks] {message}", file=sys.stderr, flush=True)


def all_scenarios() -> list[ModuleType]:
    from benchmarks.scenarios import (
        client_cost,
        concurrency,
        fleet,
        handlers,
        large_output,
        original,
        ssh,
        throughput,
    )

    return [throughput, client_cost, concurrency, large_output, handlers, ssh, original, fleet]
