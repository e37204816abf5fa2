"""Results as a pandas DataFrame, one row per command."""

from __future__ import annotations

from typing import Any

from remsvc_core.errors import HandlerError
from remsvc_core.handlers import as_tid, result_list

COLUMNS = ("tid", "cmd", "rc", "out", "err", "hsh")
_INT_COLUMNS = ("tid", "rc")
_TEXT_COLUMNS = ("cmd", "out", "err", "hsh")
INSTALL_HINT = "pip install 'airflow-provider-remsvc[pandas]'"


def to_dataframe(results: Any) -> Any:
    """Results as a pandas DataFrame, one row per command, in command order.

    Columns ``tid, cmd, rc, out, err, hsh``: int64 for ``tid`` and ``rc``, pandas'
    ``string`` dtype for the text, a default RangeIndex; any extra keys an earlier
    step added (``hash_ok``) follow as further columns. The frame is plain enough to
    go through Airflow's XCom and come back equal. Takes the raw mapping, a list of
    result dicts, or a DataFrame from an earlier step (returned re-typed).
    Needs pandas: ``pip install 'airflow-provider-remsvc[pandas]'``.
    """
    pd = _pandas()
    rows = result_list(results, handler="'dataframe'")
    columns: dict[str, Any] = {}
    for key in _INT_COLUMNS:
        columns[key] = pd.array([_int_field(row, key) for row in rows], dtype="int64")
    for key in _TEXT_COLUMNS:
        columns[key] = pd.array([_text_field(row, key) for row in rows], dtype="string")
    for key in _extra_keys(rows):
        columns[key] = _extra_column(pd, [row.get(key) for row in rows])
    order = [*COLUMNS, *(key for key in columns if key not in COLUMNS)]
    return pd.DataFrame({key: columns[key] for key in order})


def _pandas() -> Any:
    try:
        import pandas
    except ImportError as exc:
        raise HandlerError(
            f"the 'dataframe' result handler needs pandas, which is not installed: {INSTALL_HINT}"
        ) from exc
    return pandas


def _int_field(row: dict[str, Any], key: str) -> int:
    value = as_tid(row.get(key))
    if value is None:
        raise HandlerError(
            f"'dataframe' needs an integer {key!r} in every result; tid {row['tid']} has "
            f"{row.get(key)!r}"
        )
    return value


def _text_field(row: dict[str, Any], key: str) -> str:
    value = row.get(key)
    return "" if value is None else str(value)


def _extra_keys(rows: list[dict[str, Any]]) -> list[str]:
    seen: dict[str, None] = {}
    for row in rows:
        for key in row:
            if key not in COLUMNS:
                seen.setdefault(str(key), None)
    return list(seen)


def _extra_column(pd: Any, values: list[Any]) -> Any:
    # Text goes to the string dtype like the standard columns; bools and numbers get
    # numpy dtypes; anything mixed stays as pandas infers it.
    if values and all(isinstance(v, str) for v in values):
        return pd.array(values, dtype="string")
    return pd.Series(values).to_numpy() if values else pd.array([], dtype="object")
