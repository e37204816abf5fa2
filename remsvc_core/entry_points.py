"""Finding and loading what installed packages register in remsvc's entry-point groups.

remsvc reads two groups: ``remsvc.plugins`` (hook plugins, :mod:`remsvc_core.plugins`)
and ``remsvc.handlers`` (result handlers, :mod:`remsvc_core.handlers`). Both find their
entry points through one :class:`EntryPointGroup` each and describe them with one record
type, :class:`EntryPointInfo`; what a group does with what it loaded (register hooks,
pick one handler among several of the same name) stays with that group.

Discovery reads the installed distributions' metadata once and caches it; an entry
point is imported only when it is loaded, and the object is cached too.
:meth:`EntryPointGroup.refresh` drops both, so a package installed while the process
runs (a notebook, a test) is found without a restart. A distribution visible twice on
``sys.path`` (a copy and an editable install, say) counts once: the first one found.
"""

from __future__ import annotations

import functools
import importlib
import importlib.metadata as metadata
import re
import threading
import types
from dataclasses import dataclass, replace

__all__ = [
    "BUILTIN_DISTRIBUTION",
    "HANDLERS_GROUP",
    "PLUGINS_GROUP",
    "EntryPointGroup",
    "EntryPointInfo",
    "error_text",
    "info_of_object",
    "normalize_package",
]

BUILTIN_DISTRIBUTION = "airflow-provider-remsvc"
PLUGINS_GROUP = "remsvc.plugins"
HANDLERS_GROUP = "remsvc.handlers"


@dataclass(frozen=True)
class EntryPointInfo:
    """One thing a package registers with remsvc: where it comes from, and whether it loads.

    ``package`` and ``version`` name the distribution that ships it ("" for a plugin
    registered in code from a module no distribution owns); ``entry_point`` is its
    ``module:attribute`` (for a plugin registered in code: its module); ``builtin`` is
    true for what remsvc itself ships; ``error`` holds ``"ExceptionType: message"``
    when importing it failed, else None.
    """

    group: str
    name: str
    package: str
    version: str
    entry_point: str
    builtin: bool = False
    error: str | None = None

    @property
    def origin(self) -> str:
        """``"package NAME VERSION"``, or ``"module NAME"`` when no distribution ships it."""
        if self.package:
            return f"package {self.package} {self.version}".rstrip()
        return f"module {self.entry_point.partition(':')[0]}"

    def failed(self, exc: BaseException) -> EntryPointInfo:
        """This record with ``error`` saying why loading it raised ``exc``."""
        return replace(self, error=error_text(exc))


def error_text(exc: BaseException) -> str:
    """How a load error is shown everywhere: ``"ExceptionType: message"``."""
    return f"{type(exc).__name__}: {exc}"


def normalize_package(name: str) -> str:
    """PEP 503 normalization, so ``Acme_Handlers`` and ``acme-handlers`` are one package."""
    return re.sub(r"[-_.]+", "-", name).lower()


def _is_builtin(package: str) -> bool:
    return normalize_package(package) == BUILTIN_DISTRIBUTION


class EntryPointGroup:
    """The entry points of one group, discovered once and loaded on demand (thread-safe)."""

    def __init__(self, group: str) -> None:
        self.group = group
        self._lock = threading.RLock()
        self._entries: tuple[EntryPointInfo, ...] | None = None
        self._loaded: dict[EntryPointInfo, object] = {}

    def entries(self) -> tuple[EntryPointInfo, ...]:
        """Every entry point of the group, in discovery order, one per name and distribution."""
        with self._lock:
            if self._entries is None:
                self._entries = tuple(self._discover())
            return self._entries

    def load(self, entry: EntryPointInfo) -> object:
        """Import the object ``entry`` names; whatever the import raises is raised."""
        with self._lock:
            if entry in self._loaded:
                return self._loaded[entry]
        loaded: object = metadata.EntryPoint(entry.name, entry.entry_point, self.group).load()
        with self._lock:
            self._loaded[entry] = loaded
        return loaded

    def refresh(self) -> None:
        """Forget what was discovered and loaded; the next call reads metadata afresh."""
        with self._lock:
            importlib.invalidate_caches()
            self._entries = None
            self._loaded.clear()

    def _discover(self) -> list[EntryPointInfo]:
        found: list[EntryPointInfo] = []
        seen: set[tuple[str, str]] = set()
        for ep in metadata.entry_points(group=self.group):
            dist = getattr(ep, "dist", None)
            package = str(dist.name) if dist is not None else ""
            key = (ep.name, normalize_package(package))
            if key in seen:  # the same distribution visible twice on sys.path
                continue
            seen.add(key)
            found.append(
                EntryPointInfo(
                    group=self.group,
                    name=ep.name,
                    package=package,
                    version=str(dist.version) if dist is not None else "",
                    entry_point=ep.value,
                    builtin=_is_builtin(package),
                )
            )
        return found


def info_of_object(obj: object, *, name: str, group: str) -> EntryPointInfo:
    """Describe ``obj``, registered in code as ``name``, like an entry point of ``group``:
    the distribution that ships its module, if any."""
    module = (
        obj.__name__
        if isinstance(obj, types.ModuleType)
        else getattr(obj, "__module__", None) or type(obj).__module__
    )
    package = _distribution_of(module.split(".")[0])
    return EntryPointInfo(
        group=group,
        name=name,
        package=package,
        version=_version_of(package) if package else "",
        entry_point=module,
        builtin=_is_builtin(package),
    )


_packages: dict[str, list[str]] | None = None


def _distribution_of(top_module: str) -> str:
    global _packages
    if _packages is None:
        # Scans every installed distribution once; only needed to name a plugin.
        _packages = dict(metadata.packages_distributions())
    dists = _packages.get(top_module)
    return dists[0] if dists else ""


@functools.lru_cache(maxsize=256)
def _version_of(package: str) -> str:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return ""
