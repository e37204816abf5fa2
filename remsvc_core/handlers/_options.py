"""Checking a handler's options when the pipeline is resolved, not when it runs.

A handler's options are the keyword parameters after its first (the results). Names
it does not take, and required ones left out, are reported with the list it accepts.
A handler may also define ``validate_options(**options)`` to check values; whatever
that raises becomes a :class:`HandlerError` naming the handler. So a DAG with a bad
option fails when it is parsed, not on a worker hours later.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping
from typing import Any

from remsvc_core.errors import HandlerError

_KEYWORD_KINDS = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)


def accepted_options(handler: Callable[..., Any]) -> list[str] | None:
    """The option names ``handler`` takes; None when it takes any (``**options``) or
    its signature cannot be read."""
    try:
        params = list(inspect.signature(handler).parameters.values())
    except (TypeError, ValueError):
        return None
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params):
        return None
    return [p.name for p in params[1:] if p.kind in _KEYWORD_KINDS]


def check_options(name: str, handler: Callable[..., Any], options: object) -> dict[str, Any]:
    """Validate ``options`` for ``handler`` (registered as ``name``); returns a copy."""
    if options is None:
        options = {}
    if not isinstance(options, Mapping):
        raise HandlerError(
            f"options for result handler {name!r} must be a JSON object (a dict), "
            f"got {type(options).__name__}"
        )
    bad_keys = [key for key in options if not isinstance(key, str)]
    if bad_keys:
        raise HandlerError(
            f"option names for result handler {name!r} must be strings: {bad_keys!r}"
        )
    chosen = dict(options)
    _check_signature(name, handler, chosen)
    validate = getattr(handler, "validate_options", None)
    if callable(validate):
        try:
            validate(**chosen)
        except HandlerError as exc:
            raise HandlerError(f"result handler {name!r}: {exc}") from exc
        except (TypeError, ValueError) as exc:
            raise HandlerError(f"result handler {name!r}: bad options {chosen!r}: {exc}") from exc
    return chosen


def _check_signature(name: str, handler: Callable[..., Any], options: dict[str, Any]) -> None:
    try:
        params = list(inspect.signature(handler).parameters.values())
    except (TypeError, ValueError):
        return  # a builtin or C callable: nothing to check against
    if not params or params[0].kind not in (
        inspect.Parameter.POSITIONAL_ONLY,
        inspect.Parameter.POSITIONAL_OR_KEYWORD,
        inspect.Parameter.VAR_POSITIONAL,
    ):
        raise HandlerError(
            f"result handler {name!r} must take the results as its first positional "
            "parameter: def handler(results, **options)"
        )
    accepted = accepted_options(handler)
    if accepted is not None:
        unknown = sorted(set(options) - set(accepted))
        if unknown:
            offer = f"it accepts: {', '.join(accepted)}" if accepted else "it takes no options"
            raise HandlerError(
                f"result handler {name!r} has no option {', '.join(map(repr, unknown))}; {offer}"
            )
    required = [
        p.name
        for p in params[1:]
        if p.kind in _KEYWORD_KINDS and p.default is inspect.Parameter.empty
    ]
    missing = [key for key in required if key not in options]
    if missing:
        example = ", ".join(f'"{key}": ...' for key in missing)
        raise HandlerError(
            f"result handler {name!r} needs option(s) {', '.join(map(repr, missing))}; "
            f'write {{"name": "{name}", "options": {{{example}}}}}'
        )
