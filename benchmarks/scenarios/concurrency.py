"""3. Many streams at once from one event loop, as many deferred tasks in one triggerer.

Each count runs against a fresh server process, so the server's peak resident set is
that count's alone; each client is a fresh process for the same reason. Growth is
shown as the ratio to the smallest count measured in the same run.
"""

from __future__ import annotations

from typing import Any

from benchmarks.measure import median, run_worker
from benchmarks.report import Row, ScenarioResult, Target
from benchmarks.scenarios import Context
from benchmarks.server_proc import ServerProcess

KEY = "concurrency"
TITLE = "3. Concurrent streams"
TARGET_STREAMS = 1000
NO_LOSS = Target("<=", 0, on="value")
CLIENT_MEMORY = Target("<=", 200, on="value")
SERVER_MAX_PARALLEL = 4


def run(ctx: Context) -> ScenarioResult:
    sizes = ctx.sizes
    commands = [f"echo {tid}" for tid in range(1, sizes.per_stream + 1)]
    result = ScenarioResult(KEY, TITLE)
    figures: dict[int, dict[str, Any]] = {}
    raw: dict[int, list[dict[str, Any]]] = {}
    for count in sizes.stream_counts:
        walls, lost, client_peak, server_peak, server_idle = [], 0, 0.0, 0.0, 0.0
        for _ in range(sizes.rounds):
            ctx.log(f"concurrency: {count} streams x {len(commands)} commands")
            with ServerProcess(max_parallel=SERVER_MAX_PARALLEL) as server:
                server_idle = max(server_idle, server.rss_mib())
                out = run_worker(
                    "many_streams",
                    {"target": server.target, "streams": count, "per_stream": len(commands),
                     "commands": commands},
                    timeout=900,
                )  # fmt: skip
                server_peak = max(server_peak, server.peak_rss_mib())
            raw.setdefault(count, []).append(out)
            walls.append(float(out["elapsed_s"]))
            lost += int(out["lost"]) + int(out["wrong_output"])
            client_peak = max(client_peak, float(out["peak_rss_mib"]))
        figures[count] = {
            "wall": median(walls),
            "lost": lost,
            "client": client_peak,
            "server": server_peak,
            "client_idle": min(float(o["idle_rss_mib"]) for o in raw[count]),
            "server_idle": server_idle,
            "statuses": [o["statuses"] for o in raw[count]],
            "raised": [o["raised"] for o in raw[count] if o["raised"]],
        }

    smallest = min(figures)
    base = figures[smallest]
    for count, fig in figures.items():
        grows = count != smallest
        label = f"{smallest} streams"

        def row(case: str, key: str, unit: str, target: Target | None = None,
                count: int = count, fig: dict[str, Any] = fig, grows: bool = grows,
                label: str = label) -> Row:  # fmt: skip
            return Row(
                case=f"{count} streams: {case}",
                value=fig[key],
                unit=unit,
                baseline=base[key] if grows else None,
                baseline_label=label if grows else "",
                ratio=fig[key] / base[key] if grows and base[key] else None,
                target=target,
            )

        result.rows.append(row("wall time", "wall", "s"))
        result.rows.append(row("results lost", "lost", "", NO_LOSS))
        result.rows.append(
            row(
                "client peak RSS",
                "client",
                "MiB",
                CLIENT_MEMORY if count == TARGET_STREAMS else None,
            )
        )
        result.rows.append(row("server peak RSS", "server", "MiB"))
        total = count * len(commands)
        result.notes.append(
            f"{count} streams: {total} commands in {fig['wall']:.2f} s ({total / fig['wall']:.0f} "
            f"commands/s, {fig['wall'] / count * 1000:.1f} ms per stream); client RSS idle "
            f"{fig['client_idle']:.0f} MiB -> peak {fig['client']:.0f} MiB "
            f"({(fig['client'] - fig['client_idle']) / count * 1024:.0f} KiB per stream); server "
            f"RSS idle {fig['server_idle']:.0f} MiB -> peak {fig['server']:.0f} MiB; stream "
            f"statuses {fig['statuses']}" + (f"; raised {fig['raised']}" if fig["raised"] else "")
        )
    result.notes.insert(
        0,
        f"Each stream runs {commands} (output checked: `echo N` must come back as tid N); "
        f"server max_parallel={SERVER_MAX_PARALLEL}; streams are started together with "
        f"asyncio.gather on one event loop; {sizes.rounds} round(s) per count (median wall "
        "time, highest peaks, losses summed). 'Lost' counts results that never arrived "
        "plus results with the wrong output. The ratio column is growth over the "
        f"{smallest}-stream figure.",
    )
    result.details = {"rounds": {str(k): v for k, v in raw.items()}}
    return result
