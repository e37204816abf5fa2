"""Host lists written short: ``web1–web97, web99, db1, db2``.

Names are sorted the way people count (``web2`` before ``web10``), and a run of three
or more names that differ only by one number counting up by one is written as its
first and last name joined by an en dash (``–``): hyphens are common inside host
names, so a plain ``-`` would be ambiguous. Zero-padded numbers only join names of
the same width (``web08–web10``); names without a number are listed as they are.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

__all__ = ["RANGE_DASH", "compress_hosts", "natural_key"]

RANGE_DASH = "\u2013"
#: A run shorter than this is listed name by name: "web1, web2" reads better than a range.
_MIN_RUN = 3
_NUMBER = re.compile(r"(\d+)")


def natural_key(name: str) -> tuple[tuple[int, int | str], ...]:
    """A sort key that orders the numbers inside names by value (web2 < web10)."""
    return tuple(
        (1, int(part)) if index % 2 else (0, part) for index, part in enumerate(_NUMBER.split(name))
    )


def compress_hosts(hosts: Iterable[str], separator: str = ", ") -> str:
    """``hosts`` sorted naturally, runs of consecutive numbers written as ranges."""
    names = sorted(dict.fromkeys(hosts), key=natural_key)
    pieces: list[str] = []
    run: list[str] = []
    for name in names:
        if run and not _follows(run, name):
            pieces.extend(_written(run))
            run = []
        run.append(name)
    pieces.extend(_written(run))
    return separator.join(pieces)


def _written(run: list[str]) -> list[str]:
    if len(run) >= _MIN_RUN:
        return [f"{run[0]}{RANGE_DASH}{run[-1]}"]
    return list(run)


def _follows(run: list[str], name: str) -> bool:
    """Whether ``name`` continues ``run``: the same text, the same numbers but one,
    and that one (the same one the run counts with) one higher than the last."""
    previous = _NUMBER.split(run[-1])
    current = _NUMBER.split(name)
    if len(previous) != len(current):
        return False
    differing = [
        index for index, (a, b) in enumerate(zip(previous, current, strict=True)) if a != b
    ]
    if len(differing) != 1 or differing[0] % 2 == 0:
        return False  # text differs, or more than one number does
    position = differing[0]
    if len(run) > 1 and _NUMBER.split(run[0])[position] == previous[position]:
        return False  # the run so far counts with another number
    a, b = previous[position], current[position]
    if int(b) != int(a) + 1:
        return False
    return _padded_alike(a, b)


def _padded_alike(a: str, b: str) -> bool:
    """Both unpadded (9, 10), or both padded to one width (08, 09, 10)."""
    padded_a = len(a) > 1 and a.startswith("0")
    padded_b = len(b) > 1 and b.startswith("0")
    if not padded_a and not padded_b:
        return True
    return len(a) == len(b)
