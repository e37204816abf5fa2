"""``@result_handler``: attach the optional parts of a handler in one typed place."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any, TypeVar, overload

HandlerT = TypeVar("HandlerT", bound=Callable[..., Any])


@overload
def result_handler(func: HandlerT, /) -> HandlerT: ...


@overload
def result_handler(
    *,
    accepted_rcs: Callable[..., Iterable[int] | None] | None = None,
    result_hook: Callable[..., object | None] | None = None,
    validate_options: Callable[..., None] | None = None,
    description: str | None = None,
) -> Callable[[HandlerT], HandlerT]: ...


def result_handler(
    func: Any = None,
    /,
    *,
    accepted_rcs: Callable[..., Iterable[int] | None] | None = None,
    result_hook: Callable[..., object | None] | None = None,
    validate_options: Callable[..., None] | None = None,
    description: str | None = None,
) -> Any:
    """Mark a function as a result handler and attach its optional parts.

    Each part is called with the step's options as keyword arguments:

    - ``accepted_rcs(**options)``: exit codes that count as success, or None for the
      default ``{0}``;
    - ``result_hook(**options)``: a pluggy plugin object (methods marked with
      ``remsvc_core.hookimpl``) checking each result as it arrives, or None;
    - ``validate_options(**options)``: raise ``ValueError`` for bad values, so a DAG
      fails when it is parsed.

    ``description`` replaces the docstring's first line in ``remsvc handlers``.
    The function itself is returned with only these attributes added, so it can
    still be called directly.
    """

    def attach(target: HandlerT) -> HandlerT:
        parts = {
            "accepted_rcs": accepted_rcs,
            "result_hook": result_hook,
            "validate_options": validate_options,
            "description": description,
        }
        for attribute, value in parts.items():
            if value is not None:
                setattr(target, attribute, value)
        return target

    if func is not None:
        return attach(func)
    return attach
