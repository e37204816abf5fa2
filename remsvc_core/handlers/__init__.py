"""Result handlers: resolving them by name and running them as a pipeline.

A result handler is any callable ``handler(results, **options)``. ``results`` is the
raw mapping ``{tid: result_dict}`` (tids may be ints or, after a JSON round-trip,
strings) or whatever the previous handler in a pipeline returned. Handlers are found
by name through the ``remsvc.handlers`` entry-point group; see docs/plugin-authors.md.
Everything below is public, and all the built-in handlers use (``remsvc_handlers``).

Optional attributes a handler object may carry:

``accepted_rcs(**options) -> Iterable[int] | None``
    which exit codes count as success (default ``{0}``);
``result_hook(**options) -> object | None``
    a pluggy plugin object with a ``remsvc_result`` hookimpl, fed each result while
    the stream runs; it may raise :class:`~remsvc_core.errors.StopStream` to fail fast;
``validate_options(**options) -> None``
    raises ``ValueError``/``TypeError`` for bad option values at resolve time;
``description``
    one line for ``remsvc handlers`` (else the docstring's first line).

The :func:`result_handler` decorator attaches these in one typed place.

Reading the results:

:func:`result_list`
    copies of the rows, whatever shape they came in: for a handler that changes
    what it reads;
:func:`result_rows`, :class:`ResultRows`, :func:`reads_result_rows`
    a read-only view of the caller's own rows, without copying them, for a handler
    that only reads (what the built-ins do, for speed). Marked with
    ``@reads_result_rows``, such a handler is handed the pipeline's view uncopied;
    it changes no dict it reads and passes rows on with :meth:`ResultRows.derive`
    (the same dicts) or :meth:`ResultRows.fresh` (dicts it made). The copy rules are
    in docs/plugin-authors.md, "Reading rows in place";
:func:`as_tid`, :func:`as_ints`, :func:`is_dataframe`, :func:`normalize_raw_results`
    small readers for tids, exit codes, DataFrames and the raw mapping.
"""

from __future__ import annotations

from remsvc_core.entry_points import BUILTIN_DISTRIBUTION
from remsvc_core.handlers._define import result_handler
from remsvc_core.handlers._pipeline import (
    DEFAULT_ACCEPTED_RCS,
    DEFAULT_HANDLER,
    PipelineStep,
    ResultPipeline,
    resolve_handler,
)
from remsvc_core.handlers._registry import (
    ENTRY_POINT_GROUP,
    HandlerConflictWarning,
    HandlerInfo,
    list_handlers,
    refresh_handlers,
)
from remsvc_core.handlers._rows import (
    ResultRows,
    as_ints,
    as_tid,
    is_dataframe,
    normalize_raw_results,
    result_list,
    result_rows,
)
from remsvc_core.handlers._sharing import reads_result_rows

__all__ = [
    "BUILTIN_DISTRIBUTION",
    "DEFAULT_ACCEPTED_RCS",
    "DEFAULT_HANDLER",
    "ENTRY_POINT_GROUP",
    "HandlerConflictWarning",
    "HandlerInfo",
    "PipelineStep",
    "ResultPipeline",
    "ResultRows",
    "as_ints",
    "as_tid",
    "is_dataframe",
    "list_handlers",
    "normalize_raw_results",
    "reads_result_rows",
    "refresh_handlers",
    "resolve_handler",
    "result_handler",
    "result_list",
    "result_rows",
]
