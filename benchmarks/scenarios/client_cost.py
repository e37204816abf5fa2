"""2. Client cost per result: the CPU time the client process spends per result.

The server is a separate process, so the client's ``time.process_time()`` (all its
threads, gRPC's included) holds only the client's work: validating and hashing the
commands, writing them, reading, decoding and correlating the responses. The baseline
is the same stream driven with nothing but grpc.aio and the generated stubs, which is
what gRPC itself costs; the ratio is the engine's overhead on top of it.
"""

from __future__ import annotations

import os
from typing import Any

from benchmarks.measure import median, paired_ratio, paired_rounds, run_worker, spread
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
            args = {
                "target": server.target,
                "n": n,
                "cmd": f"cat {path}",
                "max_receive_bytes": cap * 2,
            }
            runs: dict[str, list[dict[str, Any]]] = {"engine": [], "bare": []}

            def engine(
                args: dict[str, Any] = args,
                runs: dict[str, Any] = runs,
                n: int = n,
                size: int = size,
            ) -> float:
                out = run_worker("stream", args)
                runs["engine"].append(out)
                if out["results"] != n or out["out_bytes"] != n * size:
                    raise RuntimeError(f"engine stream lost output: {out}")
                return float(out["cpu_us_per_result"])

            def bare(args: dict[str, Any] = args, runs: dict[str, Any] = runs, n: int = n) -> float:
                out = run_worker("bare_grpc_stream", args)
                runs["bare"].append(out)
                if out["results"] != n:
                    raise RuntimeError(f"bare gRPC stream lost results: {out}")
                return float(out["cpu_us_per_result"])

            ctx.log(f"client cost: {sizes.rounds} round(s) of {n} results of {_label(size)}")
            base, ours = paired_rounds(sizes.rounds, bare, engine)
            raw[_label(size)] = runs
            result.rows.append(
                Row(
                    case=f"{_label(size)} results",
                    value=median(ours),
                    unit="µs/result",
                    baseline=median(base),
                    baseline_label="bare grpc.aio stream",
                    ratio=paired_ratio(ours, base),
                    target=SMALL_TARGET if size <= 100 else None,
                )
            )
            result.notes.append(
                f"{_label(size)}: {n} results per stream, {sizes.rounds} round(s); engine "
                f"{spread(ours)} µs/result, bare gRPC {spread(base)} µs/result; engine wall "
                f"rate {median([r['rate'] for r in runs['engine']]):.0f} results/s"
            )
    result.notes.insert(
        0,
        "CPU is the client process's time.process_time() around one run_commands call "
        "(after a warm-up stream on the same channel), divided by the results; it includes "
        "command validation and hashing, gRPC's threads and decoding. Output is produced "
        "by `cat` of a file of that size; server max_parallel=1.",
    )
    result.details = {"rounds": raw}
    return result
