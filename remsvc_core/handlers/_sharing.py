"""Where a handler pipeline copies result dicts, and where it need not.

The pipeline reads the caller's results in place: it never copies them up front.
A copy is made only where a result dict could otherwise be changed, or escape, by
code that is not ours:

- **Built-in handlers read, never write.** They are marked with
  :func:`takes_result_rows` and are handed the pipeline's :class:`ResultRows` as they
  are, shared dicts included. They change no dict they were given: a step that adds
  a key (``verify_hash`` marking) builds new dicts, and a step that keeps, drops or
  reorders rows passes the same dicts on in a new list.
- **Any other step gets copies.** A plugin's handler or a Python callable may change
  what it is given; before it runs, shared rows are copied (:func:`handed_out`), so
  it can never change the caller's results, nor rows another step still holds.
- **What the pipeline returns holds no caller's dict.** A list of result dicts is
  copied on the way out if it still holds shared rows; a DataFrame shares nothing
  with its input (its text is immutable ``str`` turned into Arrow or pandas arrays).
- **Called directly** (not in a pipeline), a built-in handler returns plain lists of
  copies, as :func:`~._rows.result_list` does for plugin authors.

So ``dataframe`` on the raw results copies no row at all, ``sorted`` copies each row
once (on the way out), and a pipeline of built-ins copies each row at most once.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from remsvc_core.handlers._rows import ResultRows

HandlerT = TypeVar("HandlerT", bound=Callable[..., Any])
_MARK = "_remsvc_takes_result_rows"


def takes_result_rows(handler: HandlerT) -> HandlerT:
    """Mark a built-in handler as one that reads :class:`ResultRows` without changing
    them, and returns ResultRows only when given them (see :func:`hand_back`)."""
    setattr(handler, _MARK, True)
    return handler


def reads_result_rows(handler: object) -> bool:
    """Whether the pipeline may hand ``handler`` its shared rows uncopied."""
    return getattr(handler, _MARK, False) is True


def handed_out(value: Any) -> Any:
    """``value`` as anything outside the built-ins may see it: ResultRows become a
    plain list of dicts (or the ``{tid: result_dict}`` mapping they were read from),
    copied where shared; every other value is left as it is."""
    if not isinstance(value, ResultRows):
        return value
    rows = list(map(dict, value)) if value.shared else list(value)
    if value.keys is not None:
        return dict(zip(value.keys, rows, strict=True))
    return rows


def hand_back(given: object, rows: ResultRows) -> Any:
    """What a built-in handler returns: ``rows`` as they are inside a pipeline (it was
    given ResultRows), else as a plain list of copies, so a direct caller never gets
    an alias of its own dicts."""
    if isinstance(given, ResultRows):
        return rows if rows is not given and rows.keys is None else rows.derive()
    return handed_out(rows.derive())
