"""Choosing a result handler among those the ``remsvc.handlers`` entry points register.

Finding and importing entry points is :mod:`remsvc_core.entry_points`' job (cached;
:func:`refresh_handlers` drops the cache). What is particular to handlers is here:
an unknown name triggers one refresh before it is reported, so a package installed
while the process runs is found without a restart; and when several distributions
register the same name, one is chosen deterministically (the built-in package first,
then distribution names alphabetically) and a :class:`HandlerConflictWarning` names
them all; ``"package:name"`` picks one.
"""

from __future__ import annotations

import difflib
import sys
import threading
import warnings
from collections.abc import Callable
from dataclasses import dataclass, fields
from typing import Any

from remsvc_core.entry_points import (
    HANDLERS_GROUP,
    EntryPointGroup,
    EntryPointInfo,
    error_text,
    normalize_package,
)
from remsvc_core.errors import HandlerError, HandlerNotFoundError

ENTRY_POINT_GROUP = HANDLERS_GROUP
_PACKAGE = __name__.rpartition(".")[0]
_ENTRIES = EntryPointGroup(ENTRY_POINT_GROUP)


class HandlerConflictWarning(UserWarning):
    """Several installed packages register the same handler name."""


@dataclass(frozen=True)
class HandlerInfo(EntryPointInfo):
    """One installed result handler, as ``remsvc handlers`` lists it.

    The fields of :class:`~remsvc_core.entry_points.EntryPointInfo`, plus
    ``description`` (the handler's ``description`` or the first line of its
    docstring; empty when it cannot be loaded) and ``active``: False when another
    package's handler of the same name wins; select this one with its
    :attr:`qualified_name`.
    """

    description: str = ""
    active: bool = True

    @property
    def qualified_name(self) -> str:
        """``"package:name"``, which selects this handler even when the name is shared."""
        return f"{self.package}:{self.name}"


_lock = threading.Lock()
_warned: set[str] = set()


def refresh_handlers() -> None:
    """Forget what was discovered and loaded; the next lookup reads metadata afresh.

    Call it after installing or removing a handler package in a running process.
    """
    _ENTRIES.refresh()
    with _lock:
        _warned.clear()


def _sort_key(entry: EntryPointInfo) -> tuple[bool, str]:
    return (not entry.builtin, normalize_package(entry.package))


def _candidates() -> dict[str, list[EntryPointInfo]]:
    """Every handler name, sorted, with its entries in order of preference."""
    found: dict[str, list[EntryPointInfo]] = {}
    for entry in _ENTRIES.entries():
        found.setdefault(entry.name, []).append(entry)
    return {name: sorted(found[name], key=_sort_key) for name in sorted(found)}


def find_candidate(name: str) -> EntryPointInfo:
    """The entry ``name`` (or ``"package:name"``) selects; warns on a shared name."""
    package, _, short = name.rpartition(":")
    candidate = _lookup(package, short)
    if candidate is None:
        refresh_handlers()  # a package may have been installed since discovery
        candidate = _lookup(package, short)
    if candidate is None:
        raise HandlerNotFoundError(_not_found_message(package, short))
    return candidate


def _lookup(package: str, short: str) -> EntryPointInfo | None:
    cands = _candidates().get(short, [])
    if package:
        wanted = normalize_package(package)
        for cand in cands:
            if normalize_package(cand.package) == wanted:
                return cand
        return None
    if not cands:
        return None
    if len(cands) > 1:
        _warn_conflict(short, cands)
    return cands[0]


def _label(entry: EntryPointInfo) -> str:
    return f"{entry.package} {entry.version} ({entry.entry_point})"


def _warn_conflict(name: str, cands: list[EntryPointInfo]) -> None:
    with _lock:
        if name in _warned:
            return
        _warned.add(name)
    chosen, others = cands[0], cands[1:]
    warnings.warn(
        f"result handler name {name!r} is registered by {len(cands)} packages: "
        + "; ".join(_label(c) for c in cands)
        + f". Using {chosen.package}'s. To pick another, write "
        + " or ".join(repr(f"{c.package}:{name}") for c in others)
        + ", or uninstall the package you do not want.",
        HandlerConflictWarning,
        stacklevel=_stacklevel_outside_package(),
    )


def _stacklevel_outside_package() -> int:
    # Point the warning at the caller's code (the DAG file, the CLI), not at ours.
    frame = sys._getframe(1)
    level = 1
    while frame is not None and frame.f_globals.get("__name__", "").startswith(_PACKAGE):
        frame = frame.f_back  # type: ignore[assignment]
        level += 1
    return level


def _not_found_message(package: str, short: str) -> str:
    cands = _candidates()
    installed = ", ".join(cands) or "(none)"
    if package:
        providers = [c.package for c in cands.get(short, [])]
        if providers:
            return (
                f"package {package!r} provides no result handler named {short!r}; "
                f"it is provided by {', '.join(providers)}"
            )
        return (
            f"no result handler named {short!r} (asked of package {package!r}); "
            f"installed handlers: {installed}"
        )
    hint = difflib.get_close_matches(short, list(cands), n=1)
    did_you_mean = f" Did you mean {hint[0]!r}?" if hint else ""
    return (
        f"no result handler named {short!r}.{did_you_mean} Installed handlers: {installed}. "
        f"Install the package that provides it (it registers the name in the "
        f"{ENTRY_POINT_GROUP!r} entry-point group), or fix the name."
    )


def load_candidate(cand: EntryPointInfo) -> Callable[..., Any]:
    """Import the handler object; a failure names the package and the import error."""
    try:
        obj = _ENTRIES.load(cand)
    except Exception as exc:
        raise HandlerError(
            f"result handler {cand.name!r} from package {cand.package} {cand.version} "
            f"could not be loaded (entry point {cand.entry_point}): {error_text(exc)}. "
            f"Fix or reinstall {cand.package}, or uninstall it."
        ) from exc
    if not callable(obj):
        raise HandlerError(
            f"result handler {cand.name!r} from package {cand.package} {cand.version} is "
            f"{type(obj).__name__}, not a callable (entry point {cand.entry_point})"
        )
    handler: Callable[..., Any] = obj
    return handler


def _info(cand: EntryPointInfo, *, active: bool) -> HandlerInfo:
    """Describe ``cand``, loading it to read its description; never raises."""
    found = {field.name: getattr(cand, field.name) for field in fields(EntryPointInfo)}
    try:
        obj = load_candidate(cand)
    except HandlerError as exc:
        cause = exc.__cause__
        error = error_text(cause) if cause is not None else str(exc)
        return HandlerInfo(**{**found, "error": error}, active=active)
    return HandlerInfo(**found, description=describe_handler(obj), active=active)


def info_of(cand: EntryPointInfo) -> HandlerInfo:
    """Describe ``cand``, marking whether it is the one its bare name selects."""
    first = _candidates().get(cand.name, [cand])[0]
    return _info(cand, active=first == cand)


def describe_handler(obj: object) -> str:
    """A handler's ``description`` attribute, else the first line of its docstring."""
    description = getattr(obj, "description", None)
    if isinstance(description, str) and description.strip():
        return description.strip().splitlines()[0]
    doc = getattr(obj, "__doc__", None) or ""
    for line in doc.strip().splitlines():
        if line.strip():
            return line.strip()
    return ""


def list_handlers() -> list[HandlerInfo]:
    """Every installed result handler, sorted by name (the chosen one first per name).

    A handler whose package fails to import is listed with ``error`` set, so a
    broken install shows up here rather than only when a DAG uses it.
    """
    return [
        _info(cand, active=index == 0)
        for cands in _candidates().values()
        for index, cand in enumerate(cands)
    ]
