"""Reading the values that travel through a handler pipeline as result rows.

The raw results reach a handler as ``{tid: result_dict}``. After a JSON round-trip
(an Airflow trigger event, XCom, a file) the integer keys come back as strings, and
``"10"`` sorts before ``"2"``; every helper here orders by the integer tid, so
handlers built on them are right whichever way the keys arrive.

Plugin authors get copies (:func:`result_list`, :func:`normalize_raw_results`). The
built-in handlers read :class:`ResultRows` instead (:func:`result_rows`): the
caller's dicts in place wherever they are already in shape, so reading 100,000
results costs a few passes at C speed, not a copy of every row. Where copies are
made, and why that is safe, is in :mod:`remsvc_core.handlers._sharing`.
"""

from __future__ import annotations

import operator
from collections.abc import Iterable, Mapping
from itertools import islice
from typing import Any

from remsvc_core.errors import HandlerError

_TID = operator.itemgetter("tid")
_PLAIN_TYPES = frozenset({bool, float, int, str, type(None)})


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
    if isinstance(value, ResultRows):
        return value.describe()
    if is_dataframe(value):
        return f"a DataFrame with {len(value)} row(s)"  # type: ignore[arg-type]
    if isinstance(value, Mapping):
        return _describe_sized(type(value).__name__, len(value), mapping=True)
    if isinstance(value, (list, tuple)):
        return _describe_sized(type(value).__name__, len(value), mapping=False)
    return f"a value of type {type(value).__name__}"


def _describe_sized(type_name: str, size: int, *, mapping: bool) -> str:
    if mapping:
        return f"a {type_name} with {size} entr{'y' if size == 1 else 'ies'}"
    return f"a {type_name} of {size} item(s)"


def is_dataframe(value: object) -> bool:
    """True for a pandas DataFrame, checked without importing pandas."""
    cls = type(value)
    return cls.__name__ == "DataFrame" and cls.__module__.split(".")[0] == "pandas"


class ResultRows(list[dict[str, Any]]):
    """Result rows already read into shape: each a ``dict`` with an integer ``tid``.

    Private to the pipeline and the built-in handlers (see :mod:`._sharing`); a user
    or a plugin never sees one. ``shared`` is True when some of the dicts may belong
    to someone else (the caller's raw results): they are read in place, never changed,
    and copied before they leave (:func:`~._sharing.handed_out`). ``keys`` is set only
    on the view of a raw mapping: its integer tids, so the view can be handed out as
    that mapping again.
    """

    __slots__ = ("keys", "shared")

    def __init__(
        self,
        rows: Iterable[dict[str, Any]] = (),
        *,
        shared: bool,
        keys: list[int] | None = None,
    ) -> None:
        super().__init__(rows)
        self.shared = shared
        self.keys = keys

    def derive(self, rows: Iterable[dict[str, Any]] | None = None) -> ResultRows:
        """New rows (default: the same ones) made from these; as shared as these, and
        a list (no mapping keys), which is what a handler returns."""
        return ResultRows(self if rows is None else rows, shared=self.shared)

    def describe(self) -> str:
        """What :func:`describe_value` says about the value this stands for: the
        mapping it was read from, or a list."""
        if self.keys is not None:
            return _describe_sized("dict", len(self), mapping=True)
        return _describe_sized("list", len(self), mapping=False)


def result_rows(results: object, *, handler: str = "this handler") -> ResultRows:
    """The results as :class:`ResultRows`, copying only what must change.

    Same inputs and errors as :func:`result_list`. Rows already in shape (a ``dict``
    with an integer ``tid``) are the caller's own dicts, read in place: the result is
    ``shared``. Rows that need a fix (a string tid, a tid only in the key, another
    Mapping type) are copied and fixed. A DataFrame's rows are built fresh. Rows that
    already are :class:`ResultRows` come back as they are.
    """
    if isinstance(results, ResultRows):
        return results
    if isinstance(results, Mapping):
        return mapping_rows(results, handler=handler)
    if is_dataframe(results):
        return ResultRows(_dataframe_rows(results, handler), shared=False)
    if isinstance(results, (list, tuple)):
        if _all_in_shape(results):
            return ResultRows(results, shared=True)
        rows = [
            item if _in_shape(item) else _row(item, None, handler, index)
            for index, item in enumerate(results)
        ]
        return ResultRows(rows, shared=True)
    raise HandlerError(
        f"{handler} cannot use {describe_value(results)}; it takes the raw results "
        "mapping {tid: result_dict}, a list of result dicts, or a DataFrame with a tid column"
    )


def mapping_rows(raw: Mapping[Any, Any], *, handler: str = "the pipeline") -> ResultRows:
    """The raw mapping ``{tid: result_dict}`` as shared :class:`ResultRows`, ordered by
    the integer tid of the key, with those tids as ``keys``."""
    keys = list(raw)
    # The common case, checked at C speed: integer keys already ascending (what the
    # engine and StreamOutcome give) and every row a dict with an integer tid.
    if set(map(type, keys)) <= {int} and all(map(operator.lt, keys, islice(keys, 1, None))):
        values = list(raw.values())
        if _all_in_shape(values):
            return ResultRows(values, shared=True, keys=keys)
    rows: dict[int, dict[str, Any]] = {}
    for key, value in raw.items():
        tid = as_tid(key)
        if tid is None:
            raise HandlerError(
                f"{handler} expected the raw results mapping {{tid: result_dict}}, "
                f"but found the key {key!r}, which is not a tid"
            )
        rows[tid] = value if _in_shape(value) else _row(value, tid, handler)
    ordered = sorted(rows.items())
    return ResultRows((row for _, row in ordered), shared=True, keys=[tid for tid, _ in ordered])


def _in_shape(value: object) -> bool:
    """A plain dict with an integer tid: usable as a row as it is (``_row`` would
    give an equal copy)."""
    return type(value) is dict and type(value.get("tid")) is int


def _all_in_shape(values: list[Any] | tuple[Any, ...]) -> bool:
    """:func:`_in_shape` for every value, at C speed."""
    if not set(map(type, values)) <= {dict}:
        return False
    try:
        tids = list(map(_TID, values))
    except KeyError:
        return False
    return set(map(type, tids)) <= {int}


def column(rows: list[dict[str, Any]], key: str) -> list[Any]:
    """``row.get(key)`` of every row."""
    return column_and_presence(rows, key)[0]


def column_and_presence(rows: list[dict[str, Any]], key: str) -> tuple[list[Any], bool]:
    """``row.get(key)`` of every row, and whether every row has the key; at C speed
    when it does."""
    try:
        return list(map(operator.itemgetter(key), rows)), True
    except KeyError:
        return [row.get(key) for row in rows], False


def int_codes(values: list[Any]) -> list[Any]:
    """Each value read as an integer the way :func:`as_tid` reads it, None where it is
    not one; ``values`` itself when every value already is a plain int."""
    if set(map(type, values)) <= {int}:
        return values
    return [as_tid(value) for value in values]


def normalize_raw_results(
    raw: Mapping[Any, Any], *, handler: str = "the pipeline"
) -> dict[int, dict[str, Any]]:
    """``{tid: result_dict}`` with integer tids, ordered by tid, each dict a fresh copy.

    Accepts string tids (``{"10": {...}, "2": {...}}``); anything that is not a tid
    mapping raises :class:`HandlerError` naming the offending key.
    """
    view = mapping_rows(raw, handler=handler)
    return dict(zip(view.keys or (), map(dict, view), strict=True))


def result_list(results: object, *, handler: str = "this handler") -> list[dict[str, Any]]:
    """The results as a list of result dicts (copies), whatever shape they came in.

    - the raw mapping ``{tid: result_dict}`` (int or string tids): ordered by tid;
    - a list or tuple of result dicts (a previous handler's output): order kept;
    - a pandas DataFrame with a ``tid`` column: one dict per row, order kept, numpy
      scalars turned into plain Python values.

    Every returned dict has an integer ``tid``. Anything else raises
    :class:`HandlerError` naming ``handler`` and what it got.
    """
    rows = result_rows(results, handler=handler)
    if not rows.shared and rows is not results:
        return list(rows)  # built fresh from a DataFrame: already copies
    return list(map(dict, rows))


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
    names = [str(name) for name in frame.columns]
    # Column by column: tolist() gives Python scalars at C speed, and only columns
    # holding anything else (numpy scalars in an object column, pd.NA, NaT) are
    # converted value by value.
    columns = [_plain_values(frame.iloc[:, position].tolist()) for position in range(len(names))]
    rows = [dict(zip(names, values, strict=True)) for values in zip(*columns, strict=True)]
    if not _all_in_shape(rows):
        rows = [
            row if _in_shape(row) else _row(row, None, handler, i) for i, row in enumerate(rows)
        ]
    return rows


def _plain_values(values: list[Any]) -> list[Any]:
    if set(map(type, values)) <= _PLAIN_TYPES:
        return values
    return [_plain(value) for value in values]


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
    "ResultRows",
    "as_tid",
    "column",
    "column_and_presence",
    "describe_value",
    "int_codes",
    "is_dataframe",
    "mapping_rows",
    "normalize_raw_results",
    "result_list",
    "result_rows",
    "text_of",
]
