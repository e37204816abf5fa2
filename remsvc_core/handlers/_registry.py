"""Finding result handlers through the ``remsvc.handlers`` entry-point group.

Discovery reads installed distributions' metadata once and caches it; loading a
handler imports its module only when that handler is asked for. Both caches are
dropped by :func:`refresh_handlers`, and an unknown name triggers one refresh before
it is reported, so a package installed while the process runs (a notebook, a test)
is found without a restart.

When several distributions register the same name, one is chosen deterministically
(the built-in package first, then distribution names alphabetically) and a
:class:`HandlerConflictWarning` names them all; ``"package:name"`` picks one.
"""

from __future__ import annotations

import difflib
import importlib
import importlib.metadata as metadata
import re
import sys
import threading
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from remsvc_core.errors import HandlerError, HandlerNotFoundError

ENTRY_POINT_GROUP = "remsvc.handlers"
_PACKAGE = __name__.rpartition(".")[0]
BUILTIN_DISTRIBUTION = "airflow-provider-remsvc"

# Used only when our own distribution's metadata is not visible (running from a
# source tree that was never installed), so the default handler always exists.
_BUILTIN_FALLBACK = {
    "sorted": "remsvc_handlers.sorted:sorted_results",
    "dataframe": "remsvc_handlers.dataframe:to_dataframe",
    "rc_filter": "remsvc_handlers.rc_filter:rc_filter",
    "verify_hash": "remsvc_handlers.verify_hash:verify_hash",
}


class HandlerConflictWarning(UserWarning):
    """Several installed packages register the same handler name."""


@dataclass(frozen=True)
class HandlerInfo:
    """One installed result handler, as ``remsvc handlers`` lists it.

    ``active`` is False when another package's handler of the same name wins;
    select this one with its :attr:`qualified_name`. ``error`` holds the import
    failure when the handler could not be loaded (and ``description`` is empty).
    """

    name: str
    package: str
    version: str
    description: str
    entry_point: str
    builtin: bool = False
    active: bool = True
    error: str | None = None

    @property
    def qualified_name(self) -> str:
        """``"package:name"``, which selects this handler even when the name is shared."""
        return f"{self.package}:{self.name}"


@dataclass(frozen=True)
class _Candidate:
    name: str
    package: str
    version: str
    value: str
    builtin: bool

    @property
    def sort_key(self) -> tuple[bool, str]:
        return (not self.builtin, normalize_package(self.package))

    def label(self) -> str:
        return f"{self.package} {self.version} ({self.value})"


def normalize_package(name: str) -> str:
    """PEP 503 normalization, so ``Acme_Handlers`` and ``acme-handlers`` are one package."""
    return re.sub(r"[-_.]+", "-", name).lower()


_lock = threading.RLock()
_discovered: dict[str, list[_Candidate]] | None = None
_loaded: dict[tuple[str, str], Callable[..., Any]] = {}
_warned: set[str] = set()


def refresh_handlers() -> None:
    """Forget what was discovered and loaded; the next lookup reads metadata afresh.

    Call it after installing or removing a handler package in a running process.
    """
    global _discovered
    with _lock:
        importlib.invalidate_caches()
        _discovered = None
        _loaded.clear()
        _warned.clear()


def _candidates() -> dict[str, list[_Candidate]]:
    global _discovered
    with _lock:
        if _discovered is None:
            _discovered = _discover()
        return _discovered


def _discover() -> dict[str, list[_Candidate]]:
    found: dict[str, list[_Candidate]] = {}
    seen: set[tuple[str, str]] = set()
    for ep in metadata.entry_points(group=ENTRY_POINT_GROUP):
        dist = getattr(ep, "dist", None)
        package = str(dist.name) if dist is not None else "(unknown package)"
        version = str(dist.version) if dist is not None else "?"
        key = (ep.name, normalize_package(package))
        if key in seen:  # the same distribution visible twice on sys.path
            continue
        seen.add(key)
        builtin = normalize_package(package) == BUILTIN_DISTRIBUTION
        found.setdefault(ep.name, []).append(
            _Candidate(ep.name, package, version, ep.value, builtin)
        )
    if not any(c.builtin for cands in found.values() for c in cands):
        from remsvc_core import __version__

        for name, value in _BUILTIN_FALLBACK.items():
            found.setdefault(name, []).append(
                _Candidate(name, BUILTIN_DISTRIBUTION, __version__, value, True)
            )
    for cands in found.values():
        cands.sort(key=lambda c: c.sort_key)
    return dict(sorted(found.items()))


def installed_names() -> list[str]:
    """Every installed handler name, sorted."""
    return list(_candidates())


def find_candidate(name: str) -> _Candidate:
    """The candidate ``name`` (or ``"package:name"``) selects; warns on a shared name."""
    package, _, short = name.rpartition(":")
    candidate = _lookup(package, short)
    if candidate is None:
        refresh_handlers()  # a package may have been installed since discovery
        candidate = _lookup(package, short)
    if candidate is None:
        raise HandlerNotFoundError(_not_found_message(package, short))
    return candidate


def _lookup(package: str, short: str) -> _Candidate | None:
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


def _warn_conflict(name: str, cands: list[_Candidate]) -> None:
    with _lock:
        if name in _warned:
            return
        _warned.add(name)
    chosen, others = cands[0], cands[1:]
    warnings.warn(
        f"result handler name {name!r} is registered by {len(cands)} packages: "
        + "; ".join(c.label() for c in cands)
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


def load_candidate(cand: _Candidate) -> Callable[..., Any]:
    """Import the handler object; a failure names the package and the import error."""
    key = (cand.name, normalize_package(cand.package))
    with _lock:
        if key in _loaded:
            return _loaded[key]
    try:
        obj = metadata.EntryPoint(cand.name, cand.value, ENTRY_POINT_GROUP).load()
    except Exception as exc:
        raise HandlerError(
            f"result handler {cand.name!r} from package {cand.package} {cand.version} "
            f"could not be loaded (entry point {cand.value}): {type(exc).__name__}: {exc}. "
            f"Fix or reinstall {cand.package}, or uninstall it."
        ) from exc
    if not callable(obj):
        raise HandlerError(
            f"result handler {cand.name!r} from package {cand.package} {cand.version} is "
            f"{type(obj).__name__}, not a callable (entry point {cand.value})"
        )
    handler: Callable[..., Any] = obj
    with _lock:
        _loaded[key] = handler
    return handler


def info_for(cand: _Candidate, *, active: bool) -> HandlerInfo:
    """Describe ``cand``, loading it to read its description; never raises."""
    try:
        obj = load_candidate(cand)
    except HandlerError as exc:
        cause = exc.__cause__
        error = f"{type(cause).__name__}: {cause}" if cause is not None else str(exc)
        return HandlerInfo(
            cand.name, cand.package, cand.version, "", cand.value, cand.builtin, active, error
        )
    return HandlerInfo(
        cand.name,
        cand.package,
        cand.version,
        describe_handler(obj),
        cand.value,
        cand.builtin,
        active,
    )


def info_of(cand: _Candidate) -> HandlerInfo:
    """Describe ``cand``, marking whether it is the one its bare name selects."""
    first = _candidates().get(cand.name, [cand])[0]
    return info_for(cand, active=first == cand)


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
    infos: list[HandlerInfo] = []
    for cands in _candidates().values():
        for index, cand in enumerate(cands):
            infos.append(info_for(cand, active=index == 0))
    return infos
