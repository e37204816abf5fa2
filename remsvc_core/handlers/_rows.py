"""Reading the values that travel through a handler pipeline as result rows.

The raw results reach a handler as ``{tid: result_dict}``. After a JSON round-trip
(an Airflow trigger event, XCom, a file) the integer keys come back as strings, and
``"10"`` sorts before ``"2"``; every helper here orders by the integer tid, so
handlers built on them are right whichever way the keys arrive.
"""

from __future__ import annotations

import operator
from collections.abc import Mapping
from typing import Any

from remsvc_core.errors import HandlerError


def as_tid(value: object) -> int | None:
    """The integer tid ``value`` stands for (``3``, ``"3"``, a numpy integer), else None."""
    if isinstance(value, bool):
        return None
    if isinstance(value, str):
        text = value.strip()
        if text.lstrip("+-").isdigit() and text.isascii():
            return int(text)
        return None
    try:
        return operator.index(value)  # type: ignore[arg-type]
    except TypeError:
        return None


def describe_value(value: object) -> str:
    """A few words naming what ``value`` is, for error messages."""
    if is_dataframe(value):
        return f"a DataFrame with {len(value)} row(s)"  # type: ignore[arg-type]
    if isinstance(value, Mapping):
        return f"a {type(value).__name__} with {len(value)} entr{'y' if len(value) == 1 else 'ies'}"
    if isinstance(value, (list, tuple)):
        return f"a {type(value).__name__} of {len(value)} item(s)"
    return f"a value of type {type(value).__name__}"


def is_dataframe(value: object) -> bool:
    """True for a pandas DataFrame, checked without importing pandas."""
    cls = type(value)
    return cls.__name__ == "DataFrame" and cls.__module__.split(".")[0] == "pandas"


def normalize_raw_results(
    raw: Mapping[Any, Any], *, handler: str = "the pipeline"
) -> dict[int, dict[str, Any]]:
    """``{tid: result_dict}`` with integer tids, ordered by tid, each dict a fresh copy.

    Accepts string tids (``{"10": {...}, "2": {...}}``); anything that is not a tid
    mapping raises :class:`HandlerError` naming the offending key.
    """
    rows: dict[int, dict[str, Any]] = {}
    for key, value in raw.items():
        tid = as_tid(key)
        if tid is None:
            raise HandlerError(
                f"{handler} expected the raw results mapping {{tid: result_dict}}, "
                f"but found the key {key!r}, which is not a tid"
            )
        rows[tid] = _row(value, tid, handler)
    return dict(sorted(rows.items()))


def result_list(results: object, *, handler: str = "this handler") -> list[dict[str, Any]]:
    """The results as a list of result dicts (copies), whatever shape they came in.

    - the raw mapping ``{tid: result_dict}`` (int or string tids): ordered by tid;
    - a list or tuple of result dicts (a previous handler's output): order kept;
    - a pandas DataFrame with a ``tid`` column: one dict per row, order kept, numpy
      scalars turned into plain Python values.

    Every returned dict has an integer ``tid``. Anything else raises
    :class:`HandlerError` naming ``handler`` and what it got.
    """
    if isinstance(results, Mapping):
        return list(normalize_raw_results(results, handler=handler).values())
    if is_dataframe(results):
        return _dataframe_rows(results, handler)
    if isinstance(results, (list, tuple)):
        return [_row(item, None, handler, index) for index, item in enumerate(results)]
    raise HandlerError(
        f"{handler} cannot use {describe_value(results)}; it takes the raw results "
        "mapping {tid: result_dict}, a list of result dicts, or a DataFrame with a tid column"
    )


def _row(value: object, tid: int | None, handler: str, index: int | None = None) -> dict[str, Any]:
    where = f"tid {tid}" if tid is not None else f"item {index}"
    if not isinstance(value, Mapping):
        raise HandlerError(
            f"{handler} expected a result dict for {where}, got {describe_value(value)}"
        )
    row = dict(value)
    own = as_tid(row.get("tid", tid))
    if own is None:
        raise HandlerError(
            f"{handler} found no integer 'tid' in the result dict for {where}: {row.get('tid')!r}"
        )
    row["tid"] = own
    return row


def _dataframe_rows(frame: Any, handler: str) -> list[dict[str, Any]]:
    if "tid" not in frame.columns:
        raise HandlerError(
            f"{handler} cannot use a DataFrame without a 'tid' column "
            f"(columns: {', '.join(map(str, frame.columns))})"
        )
    rows = []
    for index, record in enumerate(frame.to_dict("records")):
        plain = {str(key): _plain(value) for key, value in record.items()}
        rows.append(_row(plain, None, handler, index))
    return rows


def _plain(value: Any) -> Any:
    # pandas hands back numpy scalars and pd.NA; downstream code (and JSON) wants
    # ints, strs, bools and None.
    if value is None:
        return None
    if type(value).__name__ in ("NAType", "NaTType"):
        return None
    item = getattr(value, "item", None)
    if callable(item) and type(value).__module__ == "numpy":
        return item()
    return value


def text_of(row: Mapping[str, Any], key: str) -> str:
    """``row[key]`` as text; missing or None reads as the empty string."""
    value = row.get(key)
    return "" if value is None else str(value)


__all__ = [
    "as_tid",
    "describe_value",
    "is_dataframe",
    "normalize_raw_results",
    "result_list",
    "text_of",
]
