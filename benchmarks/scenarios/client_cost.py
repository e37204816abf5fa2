"""2. Client cost per result: the CPU time the client process spends per result.

The server is a separate process, so the client's ``time.process_time()`` (all its
threads, gRPC's included) holds only the client's work: validating and hashing the
commands, writing them, reading, decoding and correlating the responses. The baseline
is the same stream driven with nothing but grpc.aio and the generated stubs, in the
same process, alternating with the engine round by round: what gRPC itself costs.
The engine's own share is the difference.
"""

from __future__ import annotations

import os
from typing import Any

from benchmarks.measure import median, paired_ratio, run_worker, spread
from benchmarks.report import Row, ScenarioResult, Target
from benchmarks.scenarios import Context
from benchmarks.server_proc import ServerProcess

KEY = "client_cost"
TITLE = "2. Client CPU per result"
SMALL_TARGET = Target("<=", 30.0, on="value")


def _label(size: int) -> str:
    return f"{size // 1024} KiB" if size >= 1024 else f"{size} B"


def run(ctx: Context) -> ScenarioResult:
    sizes = ctx.sizes
    result = ScenarioResult(KEY, TITLE)
    raw: dict[str, Any] = {}
    cap = max(sizes.cost_n) + (1 << 20)
    with ServerProcess(max_parallel=1, output_cap_bytes=cap) as server:
        for size, n in sorted(sizes.cost_n.items()):
            path = os.path.join(ctx.workdir, f"payload-{size}")
            with open(path, "wb") as handle:
                handle.write(b"x" * size)
            ctx.log(f"client cost: {sizes.cost_rounds} round(s) of {n} results of {_label(size)}")
            out = run_worker(
                "client_cost",
                {"target": server.target, "n": n, "cmd": f"cat {path}",
                 "max_receive_bytes": cap * 2, "rounds": sizes.cost_rounds},
                timeout=900,
            )  # fmt: skip
            if out["problems"]:
                raise RuntimeError(f"{_label(size)} streams fell short: {out['problems']}")
            raw[_label(size)] = out
            ours, base = out["engine_us"], out["bare_us"]
            own = [e - b for e, b in zip(ours, base, strict=True)]
            small = size <= 100
            result.rows.append(
                Row(
                    case=f"{_label(size)} results: client CPU",
                    value=median(ours),
                    unit="µs/result",
                    baseline=median(base),
                    baseline_label="bare grpc.aio stream",
                    ratio=paired_ratio(ours, base),
                    target=SMALL_TARGET if small else None,
                )
            )
            result.rows.append(
                Row(
                    case=f"{_label(size)} results: engine's own share (client CPU - bare gRPC)",
                    value=median(own),
                    unit="µs/result",
                    target=SMALL_TARGET if small else None,
                )
            )
            result.notes.append(
                f"{_label(size)}: {n} results per stream, {sizes.cost_rounds} round(s); engine "
                f"{spread(ours)} µs/result, bare gRPC {spread(base)} µs/result"
            )
    result.notes.insert(
        0,
        "CPU is the client process's time.process_time() around one stream (after warm-up "
        "streams on the same channel), divided by the results; it includes command "
        "validation and hashing, gRPC's threads, decoding and correlation. Output is made "
        "by `cat` of a file of that size; server max_parallel=1. The target is stated for "
        "the whole client CPU and for the engine's own share above bare grpc.aio.",
    )
    result.details = {"rounds": raw}
    return result
