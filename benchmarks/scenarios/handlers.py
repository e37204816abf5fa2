"""5. Handlers on many synthetic results, against plain pandas; and a fail-fast hook.

Each measurement is a fresh process: it builds the same synthetic ``{tid: result}``
mapping, warms the handler up on ten results (imports, entry-point lookup), then
times the call (best of a few) and measures peak memory of one more call as growth of
the peak resident set (VmHWM, reset with /proc/self/clear_refs) over the resident set
right before it. RSS, not tracemalloc: it sees pandas' and numpy's native buffers and
costs nothing while timing. The baseline is ``pd.DataFrame.from_records`` of the same
dicts, what a user would write by hand.

``apply()`` runs once the stream is over; a handler's fail-fast hook runs once per
result while it streams, on the event loop (the triggerer's, in Airflow). The hook case
times verify_hash's hook per result in a stream of 1,000 and of 20,000 results, and
their ratio: work per result that grows with the batch (a search of the batch per
result, say) shows as a ratio well above 1.
"""

from __future__ import annotations

import functools
import json
from typing import Any

from benchmarks.measure import median, paired_ratio, rotating_rounds, run_worker
from benchmarks.report import Row, ScenarioResult, Target
from benchmarks.scenarios import Context

KEY = "handlers"
TITLE = "5. Handlers vs plain pandas"
SPECS: dict[str, Any] = {
    "sorted": "sorted",
    "dataframe": "dataframe",
    "rc_filter": {"name": "rc_filter", "options": {"keep": "successes"}},
    "verify_hash": "verify_hash",
    "pipeline of all four": [
        "verify_hash",
        {"name": "rc_filter", "options": {"keep": "successes"}},
        "sorted",
        "dataframe",
    ],
}
TARGETED = {"dataframe": Target("<=", 1.5)}
HOOK_SPEC = "verify_hash"
HOOK_COUNTS = (1_000, 20_000)
HOOK_TARGET = Target("<=", 1.5)  # per result, 20,000 against 1,000: about the same


def run(ctx: Context) -> ScenarioResult:
    sizes = ctx.sizes
    n = sizes.handler_n
    result = ScenarioResult(KEY, TITLE)
    outputs: dict[str, list[dict[str, Any]]] = {}

    def measure(name: str) -> float:
        args: dict[str, Any] = {"n": n, "repeat": sizes.handler_repeat}
        if name == "pandas":
            out = run_worker("pandas_baseline", args)
        else:
            out = run_worker("handler", {**args, "spec": SPECS[name]})
        outputs.setdefault(name, []).append(out)
        return float(out["elapsed_s"])

    measures = {name: functools.partial(measure, name) for name in ("pandas", *SPECS)}
    ctx.log(f"handlers: {sizes.rounds} round(s) of {n} results x {len(measures)}")
    times = rotating_rounds(sizes.rounds, measures)

    base_time = [t * 1000 for t in times["pandas"]]
    base_mem = [float(o["peak_growth_mib"]) for o in outputs["pandas"]]
    for name in SPECS:
        ms = [t * 1000 for t in times[name]]
        mem = [float(o["peak_growth_mib"]) for o in outputs[name]]
        target = TARGETED.get(name)
        result.rows.append(
            Row(
                case=f"{name}: time",
                value=median(ms),
                unit="ms",
                baseline=median(base_time),
                baseline_label="DataFrame.from_records",
                ratio=paired_ratio(ms, base_time),
                target=target,
            )
        )
        result.rows.append(
            Row(
                case=f"{name}: peak memory growth",
                value=median(mem),
                unit="MiB",
                baseline=median(base_mem),
                baseline_label="DataFrame.from_records",
                ratio=paired_ratio(mem, base_mem),
                target=target,
            )
        )
        result.notes.append(
            f"{name}: spec {json.dumps(SPECS[name])}, output length "
            f"{outputs[name][0]['output_len']}, times {[round(t, 1) for t in ms]} ms"
        )
    result.notes.insert(
        0,
        f"{n:,} synthetic results (every 10th with rc 1 and stderr, the rest two lines of "
        f"stdout, correct CRC-32 hashes); {sizes.rounds} round(s), each a fresh process per "
        f"handler, time = best of {sizes.handler_repeat} call(s). Peak memory: peak RSS growth "
        "during one call in that process (not tracemalloc). pandas baseline times "
        f"{[round(t, 1) for t in base_time]} ms.",
    )
    hook_outputs = _hook_rows(ctx, result)
    result.details = {"rounds": outputs, "hook_rounds": hook_outputs}
    return result


def _hook_rows(ctx: Context, result: ScenarioResult) -> dict[str, list[dict[str, Any]]]:
    """The per-result cost of verify_hash's hook at each of HOOK_COUNTS, and the ratio."""
    sizes = ctx.sizes
    outputs: dict[str, list[dict[str, Any]]] = {}

    def measure(n: int) -> float:
        args = {"n": n, "spec": HOOK_SPEC, "repeat": sizes.handler_repeat}
        out = run_worker("result_hook", args)
        outputs.setdefault(str(n), []).append(out)
        return float(out["per_result_us"])

    small, large = HOOK_COUNTS
    ctx.log(f"handlers: {HOOK_SPEC} hook per result at {small:,} and {large:,} results")
    per = rotating_rounds(
        sizes.rounds, {str(n): functools.partial(measure, n) for n in HOOK_COUNTS}
    )
    result.rows.append(
        Row(
            case=f"{HOOK_SPEC} hook: per result, {small:,} results",
            value=median(per[str(small)]),
            unit="µs",
        )
    )
    result.rows.append(
        Row(
            case=f"{HOOK_SPEC} hook: per result, {large:,} results",
            value=median(per[str(large)]),
            unit="µs",
            baseline=median(per[str(small)]),
            baseline_label=f"per result at {small:,}",
            ratio=paired_ratio(per[str(large)], per[str(small)]),
            target=HOOK_TARGET,
        )
    )
    result.notes.append(
        f"{HOOK_SPEC} hook: StreamHooks.result() for every result of one stream, as the "
        f"engine calls it, best of {sizes.handler_repeat} stream(s) per process; per-result "
        f"times { ({n: [round(t, 2) for t in per[str(n)]] for n in HOOK_COUNTS}) } µs."
    )
    return outputs
