"""How many hosts at once, how many failures before no new host starts, and how many
successes make the run a success: each given as a count or a percentage of hosts.

The values are checked twice: their form when they are given (a DAG is parsed, a
command line read), and as host counts once the number of hosts is known.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from remsvc_core.errors import SettingsError

__all__ = [
    "DEFAULT_MAX_CONCURRENCY",
    "FleetLimits",
    "check_host_count",
    "check_max_concurrency",
    "fleet_limits",
]

#: Hosts running at once unless told otherwise (what AWS SSM's MaxConcurrency defaults to).
DEFAULT_MAX_CONCURRENCY = 50


@dataclass(frozen=True)
class FleetLimits:
    """The limits of one run, in hosts.

    ``max_errors``: once this many hosts failed, no new host starts (None: every host
    starts). ``required``: hosts that must succeed for the run to succeed.
    """

    hosts: int
    max_concurrency: int
    max_errors: int | None
    required: int


def check_max_concurrency(value: Any) -> int:
    """A whole number of hosts of at least 1 (a string holding one is read)."""
    number = _whole(value)
    if number is None or number < 1:
        raise SettingsError(
            f"max_concurrency must be a whole number of hosts of at least 1, got {value!r}"
        )
    return number


def check_host_count(value: Any, name: str, *, minimum: int) -> int | float | None:
    """The form of a count-or-percentage option: None, a whole number of hosts of at
    least ``minimum``, or a percentage (``"10%"``) above 0 and at most 100. Returns the
    count (int), the percentage (float), or None."""
    if value is None:
        return None
    if isinstance(value, str) and value.strip().endswith("%"):
        text = value.strip()[:-1].strip()
        try:
            percent = float(text)
        except ValueError:
            percent = math.nan
        if not 0 < percent <= 100:
            raise SettingsError(
                f"{name}={value!r}: a percentage must be above 0% and at most 100%, e.g. '10%'"
            )
        return percent
    number = _whole(value)
    fraction = _fraction(value)
    if fraction is not None:
        raise SettingsError(
            f"{name}={value!r} looks like a fraction of the hosts; write '{fraction * 100:g}%' "
            "(a percentage), or a number of hosts"
        )
    if number is None:
        raise SettingsError(
            f"{name}={value!r} is neither a number of hosts nor a percentage; write a whole "
            f"number such as {max(minimum, 1)}, or a percentage of hosts such as '10%'"
        )
    if number < minimum:
        raise SettingsError(f"{name} must be at least {minimum} host(s), got {value!r}")
    return number


def fleet_limits(
    hosts: int, *, max_concurrency: Any, max_errors: Any, success_threshold: Any
) -> FleetLimits:
    """The run's limits for ``hosts`` hosts; :class:`SettingsError` for a value that
    cannot be used (before anything is sent).

    A percentage of ``max_errors`` rounds up and is at least one host (``"10%"`` of 25
    hosts: no new host once 3 failed); one of ``success_threshold`` rounds up too
    (``"90%"`` of 25 hosts: 23 must succeed). Without ``success_threshold`` every host
    must succeed.
    """
    concurrency = check_max_concurrency(max_concurrency)
    errors = check_host_count(max_errors, "max_errors", minimum=1)
    threshold = check_host_count(success_threshold, "success_threshold", minimum=1)
    if isinstance(threshold, int) and threshold > hosts:
        raise SettingsError(
            f"success_threshold={success_threshold!r} host(s), but the run has only {hosts} "
            "host(s); lower it, or give a percentage such as '90%'"
        )
    return FleetLimits(
        hosts=hosts,
        max_concurrency=concurrency,
        max_errors=None if errors is None else max(1, _of(errors, hosts)),
        required=hosts if threshold is None else _of(threshold, hosts),
    )


def _of(value: int | float, hosts: int) -> int:
    """A count as it is; a percentage of ``hosts``, rounded up."""
    if isinstance(value, int):
        return value
    # Round what float arithmetic leaves (90% of 10 is 9.000000000000002) before ceil.
    return math.ceil(round(value * hosts / 100, 9))


def _fraction(value: Any) -> float | None:
    """``value`` if it is a number between 0 and 1 (or text holding one), else None."""
    if isinstance(value, bool) or not isinstance(value, (float, str)):
        return None
    try:
        number = float(value)
    except ValueError:
        return None
    return number if 0 < number < 1 else None


def _whole(value: Any) -> int | None:
    """``value`` as a whole number (an int, a float holding one, or such a string)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str) and value.strip().lstrip("+").isdigit():
        return int(value.strip())
    return None
