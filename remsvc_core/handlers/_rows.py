"""Reading the values that travel through a handler pipeline as result rows.

The raw results reach a handler as ``{tid: result_dict}``. After a JSON round-trip
(an Airflow trigger event, XCom, a file) the integer keys come back as strings, and
``"10"`` sorts before ``"2"``; every reader here orders by the integer tid, so
handlers built on them are right whichever way the keys arrive.

Two ways to read, both public: :func:`result_list` gives copies, for a handler that
changes what it reads; :func:`result_rows` gives a :class:`ResultRows` view of the
caller's own dicts, read in place, so reading 100,000 results costs a few passes at
C speed instead of a copy of every row. Where the pipeline copies, and what a handler
reading in place must promise, is in :mod:`remsvc_core.handlers._sharing`.
"""

from __future__ import annotations

import operator
from collections.abc import Iterable, Iterator, Mapping, Sequence
from itertools import islice
from typing import Any, cast, overload

from remsvc_core.errors import HandlerError

_TID = operator.itemgetter("tid")
_PLAIN_TYPES = frozenset({bool, float, int, str, type(None)})

Row = Mapping[str, Any]


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


def as_ints(values: list[Any]) -> list[int | None]:
    """Each value read as an integer the way :func:`as_tid` reads it, None where it is
    not one (exit codes, say); ``values`` itself when every value already is a plain int."""
    if set(map(type, values)) <= {int}:
        return values
    return [as_tid(value) for value in values]


def is_dataframe(value: object) -> bool:
    """True for a pandas DataFrame, checked without importing pandas."""
    cls = type(value)
    return cls.__name__ == "DataFrame" and cls.__module__.split(".")[0] == "pandas"


def describe_value(value: object) -> str:
    """A few words naming what ``value`` is, for error messages."""
    if isinstance(value, ResultRows):  # named after what it stands for: a mapping or a list
        mapping = value._keys is not None
        return _describe_sized("dict" if mapping else "list", len(value), mapping=mapping)
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


class ResultRows(Sequence[Row]):
    """Result rows, read-only, in order: each a ``dict`` with an integer ``tid``.

    A view, not a copy: the dicts may be the caller's own raw results. Read them, never
    change them (the rows are typed as read-only ``Mapping``); the view itself cannot
    be changed. Get one from :func:`result_rows`; pass rows on with :meth:`derive`
    (the same dicts, filtered or reordered) or :meth:`fresh` (dicts you made). A
    handler marked :func:`~remsvc_core.handlers.reads_result_rows` may return one, and
    the pipeline copies the rows before anyone else can change them.
    """

    __slots__ = ("_keys", "_rows", "_shared")

    def __init__(self, rows: list[Row], *, shared: bool, keys: list[int] | None = None) -> None:
        # Not for plugin code: result_rows(), derive() and fresh() make views. ``rows``
        # is held, not copied; ``shared`` says some dicts may be someone else's (copied
        # before they leave the pipeline); ``keys`` is set on the view of a raw mapping
        # only, its integer tids, so it can be handed out as that mapping again.
        self._rows = rows
        self._shared = shared
        self._keys = keys

    @classmethod
    def fresh(cls, rows: Iterable[Row]) -> ResultRows:
        """Rows made by the handler itself (new dicts, ``{**row, "extra": ...}``) that
        nobody else holds: the pipeline passes them on without copying them."""
        made = list(rows)
        if not _all_in_shape(made):
            made = _in_shape_rows(made, "ResultRows.fresh")
        return cls(made, shared=False)

    def derive(self, rows: Iterable[Row] | None = None) -> ResultRows:
        """Rows taken from this view (all of them by default, or some, in any order):
        the same dicts, not copies, as shared as these."""
        return ResultRows(list(self._rows if rows is None else rows), shared=self._shared)

    def column(self, key: str) -> list[Any]:
        """Every row's value for ``key``, None where a row lacks it."""
        values = self.complete_column(key)
        return values if values is not None else [row.get(key) for row in self._rows]

    def complete_column(self, key: str) -> list[Any] | None:
        """Every row's value for ``key`` at C speed; None when some row lacks the key."""
        try:
            return list(map(operator.itemgetter(key), self._rows))
        except KeyError:
            return None

    def __len__(self) -> int:
        return len(self._rows)

    def __iter__(self) -> Iterator[Row]:
        return iter(self._rows)

    @overload
    def __getitem__(self, index: int) -> Row: ...

    @overload
    def __getitem__(self, index: slice) -> ResultRows: ...

    def __getitem__(self, index: int | slice) -> Row | ResultRows:
        if isinstance(index, slice):
            return self.derive(self._rows[index])
        return self._rows[index]

    def __repr__(self) -> str:
        return f"<ResultRows: {len(self._rows)} row(s)>"


def result_rows(results: object, *, handler: str = "this handler") -> ResultRows:
    """The results as a read-only :class:`ResultRows` view, copying only what must change.

    Same inputs, order and errors as :func:`result_list`. Rows already in shape (a
    ``dict`` with an integer ``tid``) are the caller's own dicts, read in place; rows
    that need a fix (a string tid, a tid only in the key, another Mapping type) are
    copied and fixed; a DataFrame's rows are built fresh; a :class:`ResultRows` comes
    back as it is.
    """
    if isinstance(results, ResultRows):
        return results
    if isinstance(results, Mapping):
        return mapping_rows(results, handler=handler)
    if is_dataframe(results):
        return ResultRows(_dataframe_rows(results, handler), shared=False)
    if isinstance(results, (list, tuple)):
        rows = list(results) if _all_in_shape(results) else _in_shape_rows(results, handler)
        return ResultRows(rows, shared=True)
    raise HandlerError(
        f"{handler} cannot use {describe_value(results)}; it takes the raw results "
        "mapping {tid: result_dict}, a list of result dicts, or a DataFrame with a tid column"
    )


def mapping_rows(
    raw: Mapping[Any, Any], *, handler: str = "the pipeline", shared: bool = True
) -> ResultRows:
    """The raw mapping ``{tid: result_dict}`` as :class:`ResultRows`, ordered by the
    integer tid of the key, with those tids as its keys. ``shared=False`` when the
    caller made the mapping for this call alone."""
    keys = list(raw)
    # The common case, checked at C speed: integer keys already ascending (what the
    # engine and StreamOutcome give) and every row a dict with an integer tid.
    if set(map(type, keys)) <= {int} and all(map(operator.lt, keys, islice(keys, 1, None))):
        values = list(raw.values())
        if _all_in_shape(values):
            return ResultRows(values, shared=shared, keys=keys)
    rows: dict[int, Row] = {}
    for key, value in raw.items():
        tid = as_tid(key)
        if tid is None:
            raise HandlerError(
                f"{handler} expected the raw results mapping {{tid: result_dict}}, "
                f"but found the key {key!r}, which is not a tid"
            )
        rows[tid] = value if _in_shape(value) else _row(value, tid, handler)
    ordered = sorted(rows.items())
    return ResultRows([row for _, row in ordered], shared=shared, keys=[tid for tid, _ in ordered])


def mapping_tids(rows: ResultRows) -> list[int]:
    """The integer tids of the raw mapping a :func:`mapping_rows` view was read from."""
    return rows._keys or []


def _in_shape(value: object) -> bool:
    """A plain dict with an integer tid: usable as a row as it is (``_row`` would
    give an equal copy)."""
    return type(value) is dict and type(value.get("tid")) is int


def _in_shape_rows(values: Sequence[Any], handler: str) -> list[Row]:
    """``values`` as rows: those in shape as they are, the others copied and fixed."""
    return [
        value if _in_shape(value) else _row(value, None, handler, index)
        for index, value in enumerate(values)
    ]


def _all_in_shape(values: Sequence[Any]) -> bool:
    """:func:`_in_shape` for every value, at C speed."""
    if not set(map(type, values)) <= {dict}:
        return False
    try:
        tids = list(map(_TID, values))
    except KeyError:
        return False
    return set(map(type, tids)) <= {int}


def normalize_raw_results(
    raw: Mapping[Any, Any], *, handler: str = "the pipeline"
) -> dict[int, dict[str, Any]]:
    """``{tid: result_dict}`` with integer tids, ordered by tid, each dict a fresh copy.

    Accepts string tids (``{"10": {...}, "2": {...}}``); anything that is not a tid
    mapping raises :class:`HandlerError` naming the offending key.
    """
    view = mapping_rows(raw, handler=handler)
    return dict(zip(mapping_tids(view), map(dict, view), strict=True))


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
    if not rows._shared and rows is not results:
        return cast("list[dict[str, Any]]", list(rows))  # built fresh: already copies
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


def _dataframe_rows(frame: Any, handler: str) -> list[Row]:
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
    rows: list[Row] = [
        dict(zip(names, values, strict=True)) for values in zip(*columns, strict=True)
    ]
    return rows if _all_in_shape(rows) else _in_shape_rows(rows, handler)


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
