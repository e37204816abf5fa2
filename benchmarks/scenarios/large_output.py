"""4. Large output: one command writing 1, 16 and 64 MiB, against ``cat`` into a pipe.

The server's cap (``output_cap_bytes``) and the client's ``max_receive_bytes`` are
raised above the payload. The baseline reads the same file with ``cat`` into a pipe
in one local process: the bytes must cross one pipe either way, and everything above
that (gRPC framing, loopback TCP, decoding to ``str``) is what we add. Memory figures
are growth of the peak resident set over the level right before the command.

Three ways to move the output (docs/protocol-extensions.md): ``classic``, the whole
output in the result message as 1.0.0's wire has it; ``live``, sent in chunks as it is
printed and put back together in memory; ``spill``, the same chunks kept in a file
(``spill_dir``) past 8 MiB. Issue 13's targets (64 MiB at 0.6x ``cat`` or better,
peak growth at most 1.3x the payload on each side) are checked for each.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable
from typing import Any

from benchmarks.measure import median, paired_ratio, rotating_rounds, run_worker
from benchmarks.report import Row, ScenarioResult, Target
from benchmarks.scenarios import Context
from benchmarks.server_proc import ServerProcess

KEY = "large_output"
TITLE = "4. Large output"
MIB = 1 << 20
MODES = ("classic", "live", "spill")
#: Issue 13's targets, checked at the largest size.
THROUGHPUT_TARGET = Target(">=", 0.6)
MEMORY_TARGET = Target("<=", 1.3)


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
    largest = max(sizes.large_mib)
    for mib in sizes.large_mib:
        size = mib * MIB
        path = _payload(ctx, size)
        server_growth: dict[str, list[float]] = {mode: [] for mode in MODES}
        runs: dict[str, list[dict[str, Any]]] = {"cat": [], **{mode: [] for mode in MODES}}

        def cat(path: str = path, size: int = size, runs: dict[str, Any] = runs) -> float:
            out = run_worker("cat_pipe", {"path": path, "size": size})
            runs["cat"].append(out)
            return size / MIB / float(out["elapsed_s"])

        def ours(mode: str, path: str = path, size: int = size, runs: dict[str, Any] = runs,
                 server_growth: dict[str, list[float]] = server_growth) -> float:  # fmt: skip
            # A fresh server each time: its peak resident set then belongs to this payload.
            with ServerProcess(max_parallel=1, output_cap_bytes=size + MIB) as server:
                idle = server.rss_mib()
                out = run_worker(
                    "large_output",
                    {"target": server.target, "cmd": f"cat {path}", "size": size,
                     "max_receive_bytes": 2 * size + MIB, "mode": mode},
                    timeout=600,
                )  # fmt: skip
                server_growth[mode].append(server.peak_rss_mib() - idle)
            runs[mode].append(out)
            if out["bytes"] != size or out["status"] != "OK":
                raise RuntimeError(
                    f"{size} bytes of output came back as {out['bytes']} bytes ({mode}): {out}"
                )
            return size / MIB / float(out["elapsed_s"])

        ctx.log(f"large output: {sizes.large_rounds} round(s) of {mib} MiB x {len(MODES)} modes")
        measures: dict[str, Callable[[], float]] = {"cat": cat}
        for mode in MODES:
            measures[mode] = functools.partial(ours, mode)
        values = rotating_rounds(sizes.large_rounds, measures)
        raw[f"{mib} MiB"] = {**runs, "server_growth_mib": server_growth}
        base = values["cat"]
        cat_growth = max(float(o["peak_growth_mib"]) for o in runs["cat"])
        for mode in MODES:
            rates = values[mode]
            client_growth = max(float(o["peak_growth_mib"]) for o in runs[mode])
            checked = mib == largest
            result.rows.append(
                Row(
                    case=f"{mib} MiB, {mode}: throughput",
                    value=median(rates),
                    unit="MiB/s",
                    baseline=median(base),
                    baseline_label="cat into a pipe",
                    ratio=paired_ratio(rates, base),
                    target=THROUGHPUT_TARGET if checked else None,
                )
            )
            result.rows.append(
                Row(
                    case=f"{mib} MiB, {mode}: client peak growth",
                    value=client_growth,
                    unit="MiB",
                    baseline=float(mib),
                    baseline_label="the payload",
                    ratio=client_growth / mib,
                    target=MEMORY_TARGET if checked else None,
                    note=f"a process reading cat's pipe grows {cat_growth:.0f} MiB",
                )
            )
            result.rows.append(
                Row(
                    case=f"{mib} MiB, {mode}: server peak growth",
                    value=max(server_growth[mode]),
                    unit="MiB",
                    baseline=float(mib),
                    baseline_label="the payload",
                    ratio=max(server_growth[mode]) / mib,
                    target=MEMORY_TARGET if checked else None,
                )
            )
    result.notes.append(
        "One command `cat FILE` per stream (printable ASCII, so nothing is replaced when "
        "decoded); throughput is payload / wall time of the run_commands call in a fresh "
        "client process; the server is a fresh process per measurement with "
        "output_cap_bytes = payload + 1 MiB, max_parallel=1. Peak growth is VmHWM after "
        "minus VmRSS before (client: reset with /proc/self/clear_refs before the call; "
        "server: its idle RSS after start-up), max over rounds. Rounds rotate the order of "
        "cat and the three modes."
    )
    result.notes.append(
        "What bounds each mode: classic moves the output as one gRPC message, so the server "
        "holds it whole (read, then encoded) before the first byte leaves and the client "
        "holds it whole (received, then decoded): nothing overlaps and each side holds "
        "2-3 copies. live overlaps reading, sending and receiving, in 1 MiB chunks; the "
        "client still builds one str of the whole output at the end (bytes, then text: "
        "2x the payload at that moment). spill writes the chunks to a file as they come."
    )
    result.details = {"rounds": raw}
    return result
