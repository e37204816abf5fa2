"""``REMSVC_TRACE_PLUGINS=1``: one log line per hook call, through pluggy's monitoring.

pluggy calls ``before`` and ``after`` around every hook call of a manager it was added
to (:meth:`pluggy.PluginManager.add_hookcall_monitoring`); each stream's manager gets
the pair from :func:`hook_call_tracer` when tracing is on, so a slow or surprising
plugin shows up in the log with the hook, the tid and the time it took.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

__all__ = ["hook_call_tracer"]


def hook_call_tracer(log: logging.Logger) -> tuple[Callable[..., None], Callable[..., None]]:
    """pluggy's before/after pair: after each call, the implementations called and the
    time they took together, at INFO on ``log``."""
    started = threading.local()

    def before(hook_name: str, hook_impls: Sequence[Any], kwargs: dict[str, Any]) -> None:
        stack = getattr(started, "stack", None)
        if stack is None:
            stack = started.stack = []
        stack.append(time.perf_counter())

    def after(
        outcome: Any, hook_name: str, hook_impls: Sequence[Any], kwargs: dict[str, Any]
    ) -> None:
        elapsed_ms = (time.perf_counter() - started.stack.pop()) * 1000
        about = kwargs.get("result") or kwargs.get("chunk") or kwargs.get("response")
        tid = getattr(about, "tid", None)
        where = f" tid {tid}" if tid is not None else ""
        names = ", ".join(impl.plugin_name for impl in hook_impls) or "(none)"
        log.info("remsvc hook %s%s: %s in %.3f ms", hook_name, where, names, elapsed_ms)

    return before, after
