"""Finding remsvc plugins and calling their hooks, one implementation at a time.

Plugins come from three places: installed packages (entry-point group
``remsvc.plugins``, loaded once per process, each entry point on its own so one broken
package cannot keep the others out), :func:`register_plugin` (code), and the ``hooks=``
argument of one stream. The hooks themselves are documented in
:mod:`remsvc_core.hookspecs`.

Calls are isolated per implementation: pluggy's own hook call stops at the first
exception, which would let one faulty plugin silence the rest, so :class:`StreamHooks`
calls each implementation itself and turns failures into readable plugin errors.
"""

from __future__ import annotations

import functools
import importlib.metadata
import inspect
import logging
import threading
import types
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import pluggy

from remsvc_core import hookspecs
from remsvc_core.errors import PluginError, StopStream

__all__ = [
    "ENTRY_POINT_GROUP",
    "PluginError",
    "PluginInfo",
    "PluginLoadError",
    "StreamHooks",
    "entry_points_loaded",
    "get_plugin_manager",
    "list_plugins",
    "plugin_load_errors",
    "register_plugin",
    "reload_plugins",
    "unregister_plugin",
]

ENTRY_POINT_GROUP = "remsvc.plugins"

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PluginInfo:
    """One active plugin: its registered name and where it comes from."""

    name: str
    package: str
    entry_point: str = ""

    def describe(self) -> str:
        return f"plugin {self.name!r} ({self.package})"


@dataclass(frozen=True)
class PluginLoadError:
    """An entry point in ``remsvc.plugins`` that could not be loaded."""

    entry_point: str
    value: str
    package: str
    error: str

    def describe(self) -> str:
        return (
            f"plugin entry point {self.entry_point!r} = {self.value!r} ({self.package}) "
            f"failed to load: {self.error}"
        )


def _new_manager() -> pluggy.PluginManager:
    manager = pluggy.PluginManager(hookspecs.PROJECT_NAME)
    manager.add_hookspecs(hookspecs)
    return manager


def _register_checked(manager: pluggy.PluginManager, plugin: object, name: str) -> None:
    """Register ``plugin`` or raise :class:`PluginError` saying what is wrong with it."""
    if manager.is_registered(plugin):
        return
    try:
        manager.register(plugin, name=name)
    except pluggy.PluginValidationError as exc:
        raise PluginError(f"plugin {name!r} is not valid: {exc}") from exc
    except ValueError as exc:  # pluggy: the name is already taken
        raise PluginError(f"plugin {name!r} cannot be registered: {exc}") from exc
    problems = []
    callers = manager.get_hookcallers(plugin) or []
    for caller in callers:
        for impl in caller.get_hookimpls():
            if impl.plugin is not plugin:
                continue
            if not caller.has_spec() and not impl.optionalhook:
                known = ", ".join(sorted(_spec_names()))
                problems.append(f"implements unknown hook {caller.name!r} (known hooks: {known})")
            elif impl.wrapper or impl.hookwrapper:
                problems.append(
                    f"declares {caller.name!r} as a wrapper; remsvc hooks take no wrappers"
                )
    if not callers:
        problems.append(
            "has no remsvc hook implementations; decorate functions named after the hooks in "
            "remsvc_core.hookspecs with remsvc_core.hookspecs.hookimpl"
        )
    if problems:
        manager.unregister(plugin)
        raise PluginError(f"plugin {name!r} " + "; ".join(problems))


def _spec_names() -> list[str]:
    return [name for name in dir(hookspecs) if name.startswith("remsvc_")]


_packages_cache: dict[str, list[str]] | None = None


def package_of(plugin: object) -> str:
    """``"package NAME VERSION"`` for the distribution that ships ``plugin``'s module."""
    global _packages_cache
    module = (
        plugin.__name__
        if isinstance(plugin, types.ModuleType)
        else getattr(plugin, "__module__", None) or type(plugin).__module__
    )
    if _packages_cache is None:
        # Scans every installed distribution once; only needed to name a plugin.
        _packages_cache = dict(importlib.metadata.packages_distributions())
    top = module.split(".")[0]
    dists = _packages_cache.get(top)
    if not dists:
        return f"module {module}"
    return "package " + _dist_label(dists[0])


@functools.lru_cache(maxsize=256)
def _dist_label(name: str) -> str:
    try:
        return f"{name} {importlib.metadata.version(name)}"
    except importlib.metadata.PackageNotFoundError:
        return name


class _Registry:
    """The process-wide set of plugins, shared by every stream in every thread."""

    def __init__(self) -> None:
        self._lock = threading.RLock()
        self._manager = _new_manager()
        self._infos: dict[str, PluginInfo] = {}
        self._from_entry_points: list[str] = []
        self._load_errors: list[PluginLoadError] = []
        self._loaded = False

    @property
    def loaded(self) -> bool:
        return self._loaded

    def manager(self) -> pluggy.PluginManager:
        self._ensure_loaded()
        return self._manager

    def _ensure_loaded(self) -> None:
        with self._lock:
            if not self._loaded:
                self._loaded = True
                self._load_entry_points()

    def _load_entry_points(self) -> None:
        seen: set[tuple[str, str]] = set()
        for entry_point in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
            if (entry_point.name, entry_point.value) in seen:
                continue  # the same distribution found twice on sys.path
            seen.add((entry_point.name, entry_point.value))
            dist = getattr(entry_point, "dist", None)
            package = "package " + _dist_label(dist.name) if dist is not None else "unknown package"
            try:
                loaded = entry_point.load()
                plugin = loaded() if inspect.isclass(loaded) else loaded
                name = entry_point.name
                if name in self._infos:
                    raise PluginError(
                        f"the name {name!r} is already used by {self._infos[name].describe()}"
                    )
                _register_checked(self._manager, plugin, name)
            except Exception as exc:
                error = PluginLoadError(
                    entry_point=entry_point.name,
                    value=entry_point.value,
                    package=package,
                    error=f"{type(exc).__name__}: {exc}",
                )
                self._load_errors.append(error)
                log.warning("%s", error.describe(), exc_info=exc)
                continue
            self._infos[name] = PluginInfo(
                name=name, package=package, entry_point=entry_point.value
            )
            self._from_entry_points.append(name)
            log.debug("loaded remsvc plugin %r from %s", name, package)

    def register(self, plugin: object, name: str | None) -> str:
        self._ensure_loaded()
        with self._lock:
            if self._manager.is_registered(plugin):
                existing = self._manager.get_name(plugin)
                assert existing is not None
                return existing
            chosen = name or self._manager.get_canonical_name(plugin)
            if chosen in self._infos:
                raise PluginError(
                    f"a plugin named {chosen!r} is already registered "
                    f"({self._infos[chosen].describe()}); pass another name="
                )
            _register_checked(self._manager, plugin, chosen)
            self._infos[chosen] = PluginInfo(name=chosen, package=package_of(plugin))
            return chosen

    def unregister(self, plugin_or_name: object) -> None:
        self._ensure_loaded()
        with self._lock:
            if isinstance(plugin_or_name, str):
                name = plugin_or_name
                plugin = self._manager.get_plugin(name)
            else:
                plugin = plugin_or_name
                name = self._manager.get_name(plugin) or ""
            if plugin is None or not name:
                raise PluginError(f"no plugin {plugin_or_name!r} is registered")
            self._manager.unregister(plugin)
            self._infos.pop(name, None)
            if name in self._from_entry_points:
                self._from_entry_points.remove(name)

    def reload(self) -> list[PluginLoadError]:
        with self._lock:
            self._ensure_loaded()
            for name in list(self._from_entry_points):
                self.unregister(name)
            self._load_errors = []
            self._load_entry_points()
            return list(self._load_errors)

    def snapshot(self) -> tuple[list[tuple[str, object, PluginInfo]], list[PluginLoadError]]:
        self._ensure_loaded()
        with self._lock:
            plugins = [
                (name, plugin, self._infos[name])
                for name, plugin in self._manager.list_name_plugin()
                if name in self._infos
            ]
            return plugins, list(self._load_errors)

    def infos(self) -> list[PluginInfo]:
        self._ensure_loaded()
        with self._lock:
            return sorted(self._infos.values(), key=lambda info: info.name)

    def load_errors(self) -> list[PluginLoadError]:
        self._ensure_loaded()
        with self._lock:
            return list(self._load_errors)


_registry = _Registry()


def entry_points_loaded() -> bool:
    """Whether the ``remsvc.plugins`` entry points were loaded in this process yet."""
    return _registry.loaded


def get_plugin_manager() -> pluggy.PluginManager:
    """The process-wide pluggy manager (entry points loaded on first use).

    For inspection; register through :func:`register_plugin` so the plugin is checked
    and named in error reports.
    """
    return _registry.manager()


def register_plugin(plugin: object, name: str | None = None) -> str:
    """Activate ``plugin`` for every stream in this process and return its name.

    ``plugin`` is a module or an object whose methods carry
    :data:`remsvc_core.hookspecs.hookimpl`. Registering the same object again is a
    no-op. Raises :class:`PluginError` when the object implements no remsvc hook, an
    unknown hook, a wrapper, or a hook with arguments its specification lacks.
    """
    return _registry.register(plugin, name)


def unregister_plugin(plugin_or_name: object) -> None:
    """Deactivate a plugin given by object or name; :class:`PluginError` if unknown."""
    _registry.unregister(plugin_or_name)


def list_plugins() -> list[PluginInfo]:
    """The active process-wide plugins, by name."""
    return _registry.infos()


def plugin_load_errors() -> list[PluginLoadError]:
    """Entry points in ``remsvc.plugins`` that failed to load, with the reason."""
    return _registry.load_errors()


def reload_plugins() -> list[PluginLoadError]:
    """Forget plugins loaded from entry points and load them again (after installing
    a package in a running notebook, say). Plugins registered in code stay.
    Returns the entry points that failed to load."""
    return _registry.reload()


class StreamHooks:
    """The hooks of one stream: the process-wide plugins plus the stream's own.

    Built once per stream so that a plugin registered or removed meanwhile does not
    change a stream half way. Every failure is kept in :attr:`errors` as text.
    """

    def __init__(self, extra: Sequence[object] = ()) -> None:
        plugins, load_errors = _registry.snapshot()
        self.errors: list[str] = [error.describe() for error in load_errors]
        self._manager = _new_manager()
        self._infos: dict[str, PluginInfo] = {}
        # Which package ships a per-stream plugin is looked up only to name it in an
        # error: the lookup reads package metadata from disk, and this runs on the loop.
        self._unnamed: dict[str, object] = {}
        for name, plugin, info in plugins:
            self._manager.register(plugin, name=name)  # already checked when registered
            self._infos[name] = info
        for index, plugin in enumerate(extra):
            if self._manager.is_registered(plugin):
                continue  # also registered process-wide; one call per event is enough
            # The class (or module) name says which plugin it is; pluggy's canonical
            # name for an instance is only its id().
            kind = plugin.__name__ if isinstance(plugin, type) else type(plugin).__name__
            if type(plugin).__name__ == "module":
                kind = getattr(plugin, "__name__", kind)
            name = f"hooks[{index}]:{kind}"
            _register_checked(self._manager, plugin, name)
            self._unnamed[name] = plugin

    def implemented(self, hook_name: str) -> bool:
        """Whether any plugin of this stream implements ``hook_name`` (the engine skips
        the per-result call when none does)."""
        caller: pluggy.HookCaller = getattr(self._manager.hook, hook_name)
        return bool(caller.get_hookimpls())

    def stream_started(self, stream: hookspecs.StreamInfo) -> None:
        self._call("remsvc_stream_started", {"stream": stream}, context="")

    def result(self, result: Any, stream: hookspecs.StreamInfo) -> tuple[str, StopStream] | None:
        """Call ``remsvc_result``; returns (plugin description, exc) of the first StopStream."""
        return self._call(
            "remsvc_result",
            {"result": result, "stream": stream},
            context=f" for tid {result.tid}",
            allow_stop=True,
        )

    def output(self, chunk: Any, stream: hookspecs.StreamInfo) -> None:
        self._call(
            "remsvc_output", {"chunk": chunk, "stream": stream}, context=f" for tid {chunk.tid}"
        )

    def heartbeat(self, running: Any, stream: hookspecs.StreamInfo) -> None:
        self._call("remsvc_heartbeat", {"running": running, "stream": stream}, context="")

    def unexpected_response(self, response: Any, stream: hookspecs.StreamInfo) -> None:
        self._call(
            "remsvc_unexpected_response",
            {"response": response, "stream": stream},
            context=f" for tid {response.tid}",
        )

    def stream_finished(self, outcome: Any, stream: hookspecs.StreamInfo) -> None:
        self._call("remsvc_stream_finished", {"outcome": outcome, "stream": stream}, context="")

    def _call(
        self,
        hook_name: str,
        kwargs: dict[str, Any],
        *,
        context: str,
        allow_stop: bool = False,
    ) -> tuple[str, StopStream] | None:
        caller: pluggy.HookCaller = getattr(self._manager.hook, hook_name)
        stop: tuple[str, StopStream] | None = None
        # pluggy's call order: last in the list first (LIFO registration, tryfirst/trylast).
        for impl in reversed(caller.get_hookimpls()):
            try:
                impl.function(*[kwargs[arg] for arg in impl.argnames])
            except StopStream as exc:
                who = self._describe(impl.plugin_name)
                if allow_stop:
                    if stop is None:
                        stop = (who, exc)
                    continue
                self._record(
                    f"{who}: {hook_name}{context} raised StopStream, which only "
                    f"remsvc_result may raise; ignored",
                    exc,
                )
            except Exception as exc:
                who = self._describe(impl.plugin_name)
                self._record(f"{who}: {hook_name}{context} raised {type(exc).__name__}: {exc}", exc)
        return stop

    def _describe(self, plugin_name: str) -> str:
        info = self._infos.get(plugin_name)
        if info is None and plugin_name in self._unnamed:
            info = PluginInfo(name=plugin_name, package=package_of(self._unnamed[plugin_name]))
            self._infos[plugin_name] = info
        return info.describe() if info else f"plugin {plugin_name!r}"

    def _record(self, message: str, exc: BaseException) -> None:
        self.errors.append(message)
        log.error("remsvc %s", message, exc_info=exc)
