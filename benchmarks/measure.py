"""Measuring helpers: peak memory from /proc, workers in fresh processes, paired rounds.

Every measurement that has memory in it runs in a fresh process (a *worker*), because a
process's peak resident set only grows: measuring several things in one process would
charge each with the peaks of the ones before it.
"""

from __future__ import annotations

import json
import os
import re
import statistics
import subprocess
import sys
from collections.abc import Callable, Mapping, Sequence
from typing import Any

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_STATUS_FIELD = re.compile(r"^(\w+):\s+(\d+)\s*kB", re.MULTILINE)


def proc_status_kb(pid: int | str = "self") -> dict[str, int]:
    """The kB fields of /proc/PID/status (VmRSS, VmHWM, ...)."""
    with open(f"/proc/{pid}/status", encoding="utf-8") as handle:
        return {key: int(value) for key, value in _STATUS_FIELD.findall(handle.read())}


def peak_rss_mib(pid: int | str = "self") -> float:
    """The highest resident set size the process has had (VmHWM), in MiB."""
    return proc_status_kb(pid).get("VmHWM", 0) / 1024


def rss_mib(pid: int | str = "self") -> float:
    return proc_status_kb(pid).get("VmRSS", 0) / 1024


def reset_peak_rss() -> bool:
    """Set this process's VmHWM back to its current RSS (Linux >= 4.0); False if refused."""
    try:
        with open("/proc/self/clear_refs", "w", encoding="ascii") as handle:
            handle.write("5")
    except OSError:
        return False
    return True


class WorkerError(RuntimeError):
    """A measurement process failed; the message carries the end of its stderr."""


def run_worker(job: str, args: dict[str, Any], *, timeout: float = 300.0) -> dict[str, Any]:
    """Run ``benchmarks.worker JOB`` in a fresh interpreter and return the JSON it prints."""
    command = [sys.executable, "-m", "benchmarks.worker", job, json.dumps(args)]
    try:
        proc = subprocess.run(
            command,
            cwd=REPO_ROOT,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        raise WorkerError(f"worker {job} did not finish within {timeout:.0f} s") from exc
    lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
    if proc.returncode != 0 or not lines:
        tail = "\n".join(proc.stderr.strip().splitlines()[-8:])
        raise WorkerError(f"worker {job} exited {proc.returncode}: {tail or proc.stdout[-500:]}")
    result: dict[str, Any] = json.loads(lines[-1])
    return result


def paired_rounds(
    rounds: int,
    baseline: Callable[[], float],
    candidate: Callable[[], float],
) -> tuple[list[float], list[float]]:
    """Measure baseline and candidate back to back, ``rounds`` times, alternating which
    goes first (ABBA), so slow drift in the machine's load hits both alike."""
    base_values: list[float] = []
    cand_values: list[float] = []
    for index in range(rounds):
        if index % 2 == 0:
            base_values.append(baseline())
            cand_values.append(candidate())
        else:
            cand_values.append(candidate())
            base_values.append(baseline())
    return base_values, cand_values


def rotating_rounds(
    rounds: int, measures: Mapping[str, Callable[[], float]]
) -> dict[str, list[float]]:
    """Like :func:`paired_rounds` for several candidates: each round measures every one,
    starting one further along each time, so no candidate always runs first or last."""
    names = list(measures)
    values: dict[str, list[float]] = {name: [] for name in names}
    for index in range(rounds):
        shift = index % len(names)
        for name in names[shift:] + names[:shift]:
            values[name].append(measures[name]())
    return values


def median(values: Sequence[float]) -> float:
    return float(statistics.median(values)) if values else float("nan")


def paired_ratio(candidate: Sequence[float], baseline: Sequence[float]) -> float:
    """Median of the per-round ratios candidate/baseline."""
    ratios = [c / b for c, b in zip(candidate, baseline, strict=True) if b]
    return median(ratios)


def spread(values: Sequence[float]) -> str:
    """The range of ``values`` as "min-max", so a reader sees how noisy a figure was."""
    if not values:
        return "—"
    return f"{min(values):.4g}-{max(values):.4g}"
