"""Choosing which exit codes count as success, and which results to keep."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from remsvc_core.errors import HandlerError
from remsvc_core.handlers import (
    as_ints,
    as_tid,
    is_dataframe,
    reads_result_rows,
    result_handler,
    result_rows,
)

KEEP_CHOICES = ("all", "failures", "successes")


def accepted_rcs(*, accept: Any = (0,), keep: Any = "all") -> frozenset[int]:
    """The exit codes ``rc_filter`` with these options counts as success."""
    return _codes(accept)


def validate_options(*, accept: Any = (0,), keep: Any = "all") -> None:
    """Reject option values rc_filter cannot use, when the pipeline is resolved."""
    codes = _codes(accept)
    if not codes:
        raise ValueError("accept is empty; give at least one exit code, e.g. [0]")
    if isinstance(keep, str):
        if keep not in KEEP_CHOICES:
            raise ValueError(
                f"keep={keep!r} is not one of {', '.join(map(repr, KEEP_CHOICES))} "
                "or a list of exit codes"
            )
    else:
        _int_list(keep, "keep")


def _codes(accept: Any) -> frozenset[int]:
    if as_tid(accept) is not None and not isinstance(accept, str):
        return frozenset({int(accept)})
    return frozenset(_int_list(accept, "accept"))


def _int_list(values: Any, option: str) -> list[int]:
    if isinstance(values, (str, bytes)) or not isinstance(values, Iterable):
        raise ValueError(f"{option} must be a list of integer exit codes, got {values!r}")
    codes = []
    for value in values:
        code = as_tid(value) if not isinstance(value, str) else None
        if code is None:
            raise ValueError(f"{option} must hold integer exit codes; {value!r} is not one")
        codes.append(code)
    return codes


def _kept_codes(keep: Any, accepted: frozenset[int]) -> tuple[frozenset[int], bool] | None:
    """Which exit codes ``keep`` keeps, as (codes, whether the codes are kept or
    dropped); None for "all"."""
    if keep == "all":
        return None
    if keep == "failures":
        return accepted, False
    if keep == "successes":
        return accepted, True
    return frozenset(_int_list(keep, "keep")), True


@reads_result_rows
@result_handler(accepted_rcs=accepted_rcs, validate_options=validate_options)
def rc_filter(results: Any, *, accept: Any = (0,), keep: Any = "all") -> Any:
    """Decide which exit codes count as success, and keep all, failed, succeeded or chosen results.

    Options:

    ``accept``
        exit codes that count as success (default ``[0]``). ``[0, 1]`` suits
        ``grep``, which exits 1 when nothing matched. The task's success follows
        this set: the operator and ``remsvc run`` read it through
        ``ResultPipeline.accepted_rcs``.
    ``keep``
        ``"all"`` (default), ``"failures"`` (exit code not accepted),
        ``"successes"`` (accepted), or a list of exit codes to keep.

    Order of events: the stream ends; the success check runs over ALL raw results
    with the accepted set (so filtering failures out never hides them); then the
    pipeline, this step included, shapes what is returned or pushed; then, if the
    check failed, the task fails after that value was reported.

    Returns a list of result dicts in command order, or a filtered DataFrame
    (fresh RangeIndex) when given one.
    """
    validate_options(accept=accept, keep=keep)
    chosen = _kept_codes(keep, _codes(accept))
    if is_dataframe(results):
        if "rc" not in results.columns:
            raise HandlerError("'rc_filter' cannot use a DataFrame without an 'rc' column")
        if chosen is None:
            return results.reset_index(drop=True)
        codes, inside = chosen
        mask = [(code in codes) is inside for code in as_ints(results["rc"].tolist())]
        return results[mask].reset_index(drop=True)
    rows = result_rows(results, handler="'rc_filter'")
    if chosen is None:
        return rows
    codes, inside = chosen
    rcs = as_ints(rows.column("rc"))
    return rows.derive(row for row, rc in zip(rows, rcs, strict=True) if (rc in codes) is inside)
