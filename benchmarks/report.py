"""What a benchmark run produces: rows with a baseline, a ratio and a target, and the
Markdown and JSON renderings of them.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

Status = Literal["met", "missed", "skipped", "error", ""]


@dataclass(frozen=True)
class Target:
    """A figure a row must reach: ``value`` (or ``ratio``) ``op`` ``threshold``."""

    op: Literal[">=", "<="]
    threshold: float
    on: Literal["ratio", "value"] = "ratio"

    def check(self, row: Row) -> bool | None:
        measured = row.ratio if self.on == "ratio" else row.value
        if measured is None or math.isnan(measured):
            return None
        return measured >= self.threshold if self.op == ">=" else measured <= self.threshold

    def describe(self, unit: str) -> str:
        sign = "≥" if self.op == ">=" else "≤"
        if self.on == "ratio":
            return f"{sign} {_number(self.threshold)}x"
        return f"{sign} {_number(self.threshold)} {unit}".rstrip()


@dataclass
class Row:
    """One measured figure, optionally against a baseline measured in the same run."""

    case: str
    value: float | None
    unit: str
    baseline: float | None = None
    baseline_label: str = ""
    ratio: float | None = None
    target: Target | None = None
    note: str = ""
    skipped: str = ""

    @property
    def status(self) -> Status:
        if self.skipped:
            return "skipped"
        if self.target is None:
            return ""
        verdict = self.target.check(self)
        if verdict is None:
            return "error"
        return "met" if verdict else "missed"

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["target"] = (
            None
            if self.target is None
            else {
                **asdict(self.target),
                "text": self.target.describe(self.unit),
            }
        )
        data["status"] = self.status
        return data


@dataclass
class ScenarioResult:
    """Everything one scenario measured, with the notes needed to read it."""

    key: str
    title: str
    rows: list[Row] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    details: dict[str, Any] = field(default_factory=dict)
    error: str = ""
    elapsed_s: float = 0.0

    def to_json(self) -> dict[str, Any]:
        return {
            "key": self.key,
            "title": self.title,
            "rows": [row.to_json() for row in self.rows],
            "notes": self.notes,
            "details": self.details,
            "error": self.error,
            "elapsed_s": round(self.elapsed_s, 2),
        }


def _number(value: float | None) -> str:
    """A figure with about three significant digits, without scientific notation."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "—"
    magnitude = abs(value)
    if magnitude >= 1000:
        return f"{value:,.0f}"
    if magnitude >= 100:
        return f"{value:.0f}"
    if magnitude >= 10:
        return f"{value:.1f}"
    if magnitude >= 1:
        return f"{value:.2f}"
    if magnitude == 0:
        return "0"
    return f"{value:.3g}"


def _cell(row: Row) -> tuple[str, str, str, str, str]:
    if row.skipped:
        return (
            "—",
            "—",
            "—",
            row.target.describe(row.unit) if row.target else "",
            f"skipped: {row.skipped}",
        )
    measured = f"{_number(row.value)} {row.unit}".strip()
    baseline = "—"
    if row.baseline is not None:
        baseline = f"{_number(row.baseline)} {row.unit}".strip()
        if row.baseline_label:
            baseline = f"{baseline} ({row.baseline_label})"
    ratio = "—" if row.ratio is None else f"{_number(row.ratio)}x"
    target = row.target.describe(row.unit) if row.target else ""
    return (measured, baseline, ratio, target, row.status)


def summary_rows(results: list[ScenarioResult]) -> list[tuple[str, Row]]:
    return [(result.title, row) for result in results for row in result.rows]


def render_table(results: list[ScenarioResult]) -> str:
    """The one table every run prints: one line per figure, targets marked."""
    header = ("Scenario", "Case", "Measured", "Baseline (same run)", "Ratio", "Target", "Status")
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for result in results:
        if result.error and not result.rows:
            lines.append(f"| {result.title} | — | — | — | — | — | error: {_escape(result.error)} |")
            continue
        for row in result.rows:
            measured, baseline, ratio, target, status = _cell(row)
            case = row.case + (f" ({row.note})" if row.note else "")
            cells = (result.title, case, measured, baseline, ratio, target, status)
            lines.append("| " + " | ".join(_escape(c) for c in cells) + " |")
    return "\n".join(lines)


def _escape(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def render_markdown(run: dict[str, Any], results: list[ScenarioResult]) -> str:
    """The results file: how it was run, on what, the table, then each scenario's notes."""
    machine = run["machine"]
    out = [f"# remsvc benchmarks: {run['mode']} mode", ""]
    out.append(f"Command: `{run['command']}`  ")
    out.append(f"Started: {run['started']}, took {run['elapsed_s']:.0f} s.")
    out.append("")
    out.append("## Machine")
    out.append("")
    for key, value in machine.items():
        out.append(f"- {key}: {value}")
    out.append("")
    out.append("## Results")
    out.append("")
    out.append(
        "Each baseline is measured in the same run as the figure it is compared with, in "
        "alternating rounds; the ratio is the median of the per-round ratios (so it need not "
        "equal the quotient of the two medians shown)."
    )
    out.append("")
    out.append(render_table(results))
    out.append("")
    met = [row for _, row in summary_rows(results) if row.status == "met"]
    missed = [
        (title, row) for title, row in summary_rows(results) if row.status in ("missed", "error")
    ]
    targets = [row for _, row in summary_rows(results) if row.target is not None]
    out.append(f"Targets: {len(met)} met, {len(missed)} missed, of {len(targets)}.")
    for title, row in missed:
        out.append(f"- missed: {title}, {row.case}")
    out.append("")
    for result in results:
        out.append(f"## {result.title}")
        out.append("")
        if result.error:
            out.append(f"Error: `{result.error}`")
            out.append("")
        for note in result.notes:
            out.append(f"- {note}")
        out.append("")
    return "\n".join(out).rstrip() + "\n"


def render_json(run: dict[str, Any], results: list[ScenarioResult]) -> str:
    return (
        json.dumps({**run, "scenarios": [r.to_json() for r in results]}, indent=2, default=str)
        + "\n"
    )
