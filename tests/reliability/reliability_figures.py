"""What the reliability suite tried, counted as it runs and printed at the end.

Tests add to :data:`FIGURES` through the ``figures`` fixture; ``conftest.py`` prints
the totals in pytest's terminal summary. The "bad" figures (results lost, leftover
processes, token occurrences) are counted where they are measured, before the
test's assert, so a failing run prints the real number too.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

__all__ = ["FIGURES", "Figures"]


@dataclass
class Figures:
    faults: Counter[str] = field(default_factory=Counter)
    inputs: Counter[str] = field(default_factory=Counter)
    load_streams: int = 0
    load_commands: int = 0
    load_results: int = 0
    results_expected: int = 0
    results_lost: int = 0
    executions_checked: int = 0
    executed_twice: int = 0
    leftover_processes: int = 0
    process_checks: int = 0
    token_occurrences: int = 0
    token_places: Counter[str] = field(default_factory=Counter)
    notes: list[str] = field(default_factory=list)

    def note(self, text: str) -> None:
        """A measured detail worth printing with the figures."""
        self.notes.append(text)

    def fault(self, kind: str, count: int = 1) -> None:
        self.faults[kind] += count

    def tried(self, kind: str, count: int = 1) -> None:
        self.inputs[kind] += count

    def lost(self, expected: int, lost: int) -> None:
        """``expected`` results were checked, ``lost`` of them were not in the outcome."""
        self.results_expected += expected
        self.results_lost += lost

    def executions(self, commands: int, twice: int) -> None:
        self.executions_checked += commands
        self.executed_twice += twice

    def leftovers(self, count: int, checks: int = 1) -> None:
        self.leftover_processes += count
        self.process_checks += checks

    def token_scan(self, place: str, occurrences: int) -> None:
        self.token_places[place] += 1
        self.token_occurrences += occurrences

    @property
    def empty(self) -> bool:
        return not (
            self.faults
            or self.inputs
            or self.load_streams
            or self.process_checks
            or self.token_places
        )

    def lines(self) -> list[str]:
        def breakdown(counter: Counter[str]) -> str:
            return ", ".join(f"{name} {count:,}" for name, count in sorted(counter.items()))

        return [
            f"faults injected:      {sum(self.faults.values()):,} ({breakdown(self.faults)})",
            f"inputs tried:         {sum(self.inputs.values()):,} ({breakdown(self.inputs)})",
            f"load:                 {self.load_streams:,} concurrent streams, "
            f"{self.load_commands:,} commands, {self.load_results:,} results",
            f"results lost:         {self.results_lost:,} "
            f"(of {self.results_expected:,} results checked)",
            f"commands run twice:   {self.executed_twice:,} "
            f"(of {self.executions_checked:,} executions counted server-side)",
            f"leftover processes:   {self.leftover_processes:,} "
            f"(in {self.process_checks:,} checks)",
            f"token occurrences:    {self.token_occurrences:,} "
            f"(in {sum(self.token_places.values()):,} scans: {breakdown(self.token_places)})",
            *self.notes,
        ]


FIGURES = Figures()
