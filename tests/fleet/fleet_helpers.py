"""Small readers shared by the fan-out tests."""

from __future__ import annotations

from pathlib import Path


def ran_lines(record: Path) -> list[str]:
    """The lines commands appended to ``record`` (none if no command ran)."""
    return record.read_text().split() if record.exists() else []
