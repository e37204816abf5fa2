"""7. Against the original provider (airflow-provider-remsvc 1.0.0), on the same server.

Optional (``--compare-original``): it installs the original from PyPI with
``pip install --no-deps --target`` into the run's temporary directory and drives its
``RemSvcTrigger`` in separate worker processes, so its ``remsvc_provider`` is never
importable next to ours. Same server, same commands, rounds alternating with our engine.
"""

from __future__ import annotations

import os
import subprocess
import sys
from typing import Any

from benchmarks.measure import median, paired_ratio, rotating_rounds, run_worker, spread
from benchmarks.report import Row, ScenarioResult
from benchmarks.scenarios import Context
from benchmarks.server_proc import ServerProcess

KEY = "original"
TITLE = "7. vs the original provider 1.0.0"
CMD = "true"
DISTRIBUTION = "airflow-provider-remsvc==1.0.0"
NOT_ASKED = "pass --compare-original (installs airflow-provider-remsvc 1.0.0 into a temp dir)"


def _skipped(reason: str) -> ScenarioResult:
    result = ScenarioResult(KEY, TITLE)
    for case in ("throughput, one stream", "client CPU per result"):
        result.rows.append(Row(case=case, value=None, unit="", skipped=reason))
    return result


def _install(target: str) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--target", target,
         DISTRIBUTION],
        capture_output=True, text=True, timeout=600, check=False,
    )  # fmt: skip
    if proc.returncode != 0:
        raise RuntimeError(f"pip install {DISTRIBUTION} failed: {proc.stderr.strip()[-300:]}")


def run(ctx: Context) -> ScenarioResult:
    if not ctx.compare_original:
        return _skipped(NOT_ASKED)
    sizes = ctx.sizes
    n = sizes.throughput_n
    path = os.path.join(ctx.workdir, "original-provider")
    ctx.log(f"original: pip install --no-deps --target {path} {DISTRIBUTION}")
    _install(path)
    result = ScenarioResult(KEY, TITLE)
    outputs: dict[str, list[dict[str, Any]]] = {}
    with ServerProcess(max_parallel=1) as server:

        def ours() -> float:
            out = run_worker("stream", {"target": server.target, "n": n, "cmd": CMD})
            outputs.setdefault("ours", []).append(out)
            if out["missing"] or out["status"] != "OK":
                raise RuntimeError(f"our stream fell short: {out}")
            return float(out["rate"])

        def original() -> float:
            out = run_worker(
                "original_trigger", {"path": path, "target": server.target, "n": n, "cmd": CMD}
            )
            outputs.setdefault("original", []).append(out)
            if out["results"] != n:
                raise RuntimeError(f"the original trigger fell short: {out}")
            return float(out["rate"])

        ctx.log(f"original: {sizes.rounds} round(s) of {n} commands, ours and theirs")
        rates = rotating_rounds(sizes.rounds, {"original": original, "ours": ours})
    cpu_ours = [float(o["cpu_us_per_result"]) for o in outputs["ours"]]
    cpu_theirs = [float(o["cpu_us_per_result"]) for o in outputs["original"]]
    result.rows.append(
        Row(
            case="throughput, one stream",
            value=median(rates["ours"]),
            unit="cmd/s",
            baseline=median(rates["original"]),
            baseline_label="original 1.0.0 trigger",
            ratio=paired_ratio(rates["ours"], rates["original"]),
        )
    )
    result.rows.append(
        Row(
            case="client CPU per result",
            value=median(cpu_ours),
            unit="µs/result",
            baseline=median(cpu_theirs),
            baseline_label="original 1.0.0 trigger",
            ratio=paired_ratio(cpu_ours, cpu_theirs),
        )
    )
    result.notes.append(
        f"{n} x `{CMD}` per stream against our server (max_parallel=1), {sizes.rounds} "
        f"round(s); ours {spread(rates['ours'])} cmd/s, original {spread(rates['original'])} "
        "cmd/s. The original's trigger reads its connection from AIRFLOW_CONN_REMSVC_DEFAULT; "
        "both measure the stream call only, after a 3-command warm-up."
    )
    result.details = {"rounds": outputs}
    return result
