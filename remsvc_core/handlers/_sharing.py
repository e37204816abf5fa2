"""Where a handler pipeline copies result dicts, and where it need not.

The pipeline reads the caller's results in place: it never copies them up front.
A copy is made only where a result dict could otherwise be changed, or escape, by
code that has not promised to leave it alone:

- **A handler marked** :func:`reads_result_rows` **only reads.** The built-ins are, and
  any plugin's handler may be. It is handed the pipeline's :class:`ResultRows` as
  they are, the caller's dicts included, and promises: it changes no dict it was given
  (to add a key it builds new dicts and returns :meth:`ResultRows.fresh`); rows it
  passes on go back in a ResultRows (:meth:`ResultRows.derive`), never in a plain
  list or dict; anything else it returns (a DataFrame, a number, text) holds none of
  the dicts it read.
- **Any other step gets copies.** A handler that is not marked, or a Python
  callable, may change what it is given; before it runs, shared rows are copied
  (:func:`handed_out`), so it can never change the caller's results, nor rows another
  step still holds.
- **What the pipeline returns holds no caller's dict.** A ResultRows is turned into
  a plain list on the way out, its shared rows copied; a DataFrame shares nothing
  with its input (its text is immutable ``str`` turned into Arrow or pandas arrays).
- **Called directly** (not in a pipeline), a marked handler returns a plain list of
  copies where it returned a ResultRows, as :func:`~._rows.result_list` gives.

So ``dataframe`` on the raw results copies no row at all, ``sorted`` copies each row
once (on the way out), and a pipeline of built-ins copies each row at most once.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, TypeVar, cast

from remsvc_core.handlers._rows import ResultRows

HandlerT = TypeVar("HandlerT", bound=Callable[..., Any])
_MARK = "_remsvc_reads_result_rows"


def reads_result_rows(handler: HandlerT) -> HandlerT:
    """Declare that ``handler`` only reads its input, so the pipeline need not copy it.

    The handler is then given a read-only :class:`ResultRows` view in a pipeline
    (read it with :func:`~remsvc_core.handlers.result_rows`, which takes every input
    shape) and must keep the rules above: change no dict it was given, pass rows on
    with :meth:`ResultRows.derive` or :meth:`ResultRows.fresh`. It may return a
    ResultRows; called directly, it then returns a plain list of copies instead.
    The returned function has the handler's name, docstring, signature and
    attributes, so ``@result_handler`` may come before or after this decorator.
    """

    @functools.wraps(handler)
    def reading(results: Any, /, *args: Any, **options: Any) -> Any:
        value = handler(results, *args, **options)
        if not isinstance(value, ResultRows):
            return value
        if not isinstance(results, ResultRows):
            return handed_out(value.derive())  # called directly: plain copies
        # A view of the raw mapping would be handed out as that mapping again; what
        # a handler returns is a list.
        return value if value._keys is None else value.derive()

    setattr(reading, _MARK, True)
    return cast(HandlerT, reading)


def takes_result_rows(handler: object) -> bool:
    """Whether the pipeline may hand ``handler`` its shared rows uncopied."""
    return getattr(handler, _MARK, False) is True


def handed_out(value: Any) -> Any:
    """``value`` as a step that does not read in place, or the caller, may see it:
    a ResultRows becomes a plain list of dicts (or the ``{tid: result_dict}`` mapping
    it was read from), copied where shared; every other value is left as it is."""
    if not isinstance(value, ResultRows):
        return value
    rows = list(map(dict, value)) if value._shared else list(value)
    if value._keys is not None:
        return dict(zip(value._keys, rows, strict=True))
    return rows
