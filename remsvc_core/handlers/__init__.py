"""Result handlers: resolving them by name and running them as a pipeline.

A result handler is any callable ``handler(results, **options)``. ``results`` is the
raw mapping ``{tid: result_dict}`` (tids may be ints or, after a JSON round-trip,
strings) or whatever the previous handler in a pipeline returned. Handlers are found
by name through the ``remsvc.handlers`` entry-point group; see docs/plugin-authors.md.

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
from remsvc_core.handlers._rows import as_tid, is_dataframe, normalize_raw_results, result_list

__all__ = [
    "BUILTIN_DISTRIBUTION",
    "DEFAULT_ACCEPTED_RCS",
    "DEFAULT_HANDLER",
    "ENTRY_POINT_GROUP",
    "HandlerConflictWarning",
    "HandlerInfo",
    "PipelineStep",
    "ResultPipeline",
    "as_tid",
    "is_dataframe",
    "list_handlers",
    "normalize_raw_results",
    "refresh_handlers",
    "resolve_handler",
    "result_handler",
    "result_list",
]
