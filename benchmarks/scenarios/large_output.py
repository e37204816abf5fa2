"""4. Large output: one command writing 1, 16 and 64 MiB, against ``cat`` into a pipe.

The server's cap (``output_cap_bytes``) and the client's ``max_receive_bytes`` are
raised above the payload. The baseline reads the same file with ``cat`` into a pipe
in one local process: the bytes must cross one pipe either way, and everything above
that (gRPC framing, loopback TCP, decoding to ``str``) is what we add. Memory figures
are growth of the peak resident set over the level right before the command.
"""

from __future__ import annotations

import os
from typing import Any

from benchmarks.measure import median, paired_ratio, paired_rounds, run_worker
from benchmarks.report import Row, ScenarioResult
from benchmarks.scenarios import Context
from benchmarks.server_proc import ServerProcess

KEY = "large_output"
TITLE = "4. Large output"
MIB = 1 << 20


def _payload(ctx: Context, size: int) -> str:
    path = os.path.join(ctx.workdir, f"blob-{size}")
    if not os.path.exists(path):
        line = b"0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ-+*/\n"
        with open(path, "wb") as handle:
            handle.write((line * (size // len(line) + 1))[:size])
    return path


def run(ctx: Context) -> ScenarioResult:
    sizes = ctx.sizes
    result = ScenarioResult(KEY, TITLE)
    raw: dict[str, Any] = {}
    for mib in sizes.large_mib:
        size = mib * MIB
        path = _payload(ctx, size)
        server_growth: list[float] = []
        runs: dict[str, list[dict[str, Any]]] = {"ours": [], "cat": []}

        def cat(path: str = path, size: int = size, runs: dict[str, Any] = runs) -> float:
            out = run_worker("cat_pipe", {"path": path, "size": size})
            runs["cat"].append(out)
            return size / MIB / float(out["elapsed_s"])

        def ours(path: str = path, size: int = size, runs: dict[str, Any] = runs,
                 server_growth: list[float] = server_growth) -> float:  # fmt: skip
            # A fresh server each time: its peak resident set then belongs to this payload.
            with ServerProcess(max_parallel=1, output_cap_bytes=size + MIB) as server:
                idle = server.rss_mib()
                out = run_worker(
                    "large_output",
                    {"target": server.target, "cmd": f"cat {path}", "size": size,
                     "max_receive_bytes": 2 * size + MIB},
                    timeout=600,
                )  # fmt: skip
                server_growth.append(server.peak_rss_mib() - idle)
            runs["ours"].append(out)
            if out["bytes"] != size or out["status"] != "OK":
                raise RuntimeError(
                    f"{size} bytes of output came back as {out['bytes']} bytes: {out}"
                )
            return size / MIB / float(out["elapsed_s"])

        ctx.log(f"large output: {sizes.large_rounds} round(s) of {mib} MiB")
        base, rates = paired_rounds(sizes.large_rounds, cat, ours)
        raw[f"{mib} MiB"] = {**runs, "server_growth_mib": server_growth}
        client_growth = [float(o["peak_growth_mib"]) for o in runs["ours"]]
        cat_growth = [float(o["peak_growth_mib"]) for o in runs["cat"]]
        result.rows.append(
            Row(
                case=f"{mib} MiB: throughput",
                value=median(rates),
                unit="MiB/s",
                baseline=median(base),
                baseline_label="cat into a pipe",
                ratio=paired_ratio(rates, base),
            )
        )
        result.rows.append(
            Row(
                case=f"{mib} MiB: client peak growth",
                value=max(client_growth),
                unit="MiB",
                baseline=max(cat_growth),
                baseline_label="process reading cat's pipe",
                ratio=max(client_growth) / max(cat_growth) if max(cat_growth) > 0 else None,
            )
        )
        result.rows.append(
            Row(
                case=f"{mib} MiB: server peak growth",
                value=max(server_growth),
                unit="MiB",
                baseline=float(mib),
                baseline_label="the payload",
                ratio=max(server_growth) / mib,
            )
        )
    result.notes.append(
        "One command `cat FILE` per stream (printable ASCII, so nothing is replaced when "
        "decoded); throughput is payload / wall time of the run_commands call in a fresh "
        "client process; the server is a fresh process per measurement with "
        "output_cap_bytes = payload + 1 MiB, max_parallel=1. Peak growth is VmHWM after "
        "minus VmRSS before (client: reset with /proc/self/clear_refs before the call; "
        "server: its idle RSS after start-up), max over rounds."
    )
    result.details = {"rounds": raw}
    return result
