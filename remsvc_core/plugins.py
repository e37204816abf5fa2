"""Finding remsvc plugins and calling their hooks through pluggy, one plugin isolated
from the next.

Plugins come from three places: installed packages (entry-point group
``remsvc.plugins``, found by :mod:`remsvc_core.entry_points` and loaded once per
process, each entry point on its own so one broken package cannot keep the others
out), :func:`register_plugin` (code), and the ``hooks=`` argument of one stream. The
hooks themselves are documented in :mod:`remsvc_core.hookspecs`.

Hooks are called by pluggy, each implementation guarded so that one plugin's
exception is recorded in the stream's outcome and silences no other plugin (how, and
why pluggy alone would not do it: :mod:`remsvc_core.hook_managers`).

Two environment variables, read when the entry points are loaded (and by each
stream): ``REMSVC_LOAD_PLUGINS=a,b`` loads only the entry-point plugins named there
(an allow-list: on an Airflow worker any installed package's entry point would
otherwise load), and ``REMSVC_TRACE_PLUGINS=1`` logs every hook call of a stream with
the plugins that implement it and how long they took (pluggy's hook-call monitoring).
"""

from __future__ import annotations

import functools
import inspect
import logging
import os
import threading
import types
from collections.abc import Callable, Sequence
from typing import Any

import pluggy

from remsvc_core import hookspecs
from remsvc_core.entry_points import (
    PLUGINS_GROUP,
    EntryPointGroup,
    EntryPointInfo,
    info_of_object,
)
from remsvc_core.errors import PluginError, StopStream
from remsvc_core.hook_managers import (
    Impl,
    impls_of,
    new_manager,
    register_checked,
    register_guarded,
)
from remsvc_core.hook_tracing import hook_call_tracer

__all__ = [
    "ENTRY_POINT_GROUP",
    "EntryPointInfo",
    "PluginError",
    "StreamHooks",
    "entry_points_loaded",
    "get_plugin_manager",
    "list_plugins",
    "plugin_hooks",
    "plugin_load_errors",
    "register_plugin",
    "reload_plugins",
    "skipped_plugins",
    "unregister_plugin",
]

ENTRY_POINT_GROUP = PLUGINS_GROUP
LOAD_PLUGINS_ENV = "REMSVC_LOAD_PLUGINS"
TRACE_PLUGINS_ENV = "REMSVC_TRACE_PLUGINS"

log = logging.getLogger(__name__)


def allowed_plugins() -> frozenset[str] | None:
    """The names ``REMSVC_LOAD_PLUGINS`` allows, or None when it is not set (all load)."""
    value = os.environ.get(LOAD_PLUGINS_ENV)
    if value is None:
        return None
    return frozenset(name.strip() for name in value.split(",") if name.strip())


def tracing() -> bool:
    return os.environ.get(TRACE_PLUGINS_ENV, "").strip().lower() in {"1", "true", "yes", "on"}


def describe(info: EntryPointInfo) -> str:
    """A plugin as error messages name it: ``plugin 'name' (package NAME VERSION)``."""
    return f"plugin {info.name!r} ({info.origin})"


def describe_load_error(info: EntryPointInfo) -> str:
    """Why a ``remsvc.plugins`` entry point is not active."""
    return (
        f"plugin entry point {info.name!r} = {info.entry_point!r} ({info.origin}) "
        f"failed to load: {info.error}"
    )


class _Registry:
    """The process-wide set of plugins, shared by every stream in every thread."""

    def __init__(self) -> None:
        self._lock = threading.RLock()
        self._entry_points = EntryPointGroup(ENTRY_POINT_GROUP)
        self._manager = new_manager()
        self._infos: dict[str, EntryPointInfo] = {}
        self._from_entry_points: list[str] = []
        self._load_errors: list[EntryPointInfo] = []
        self._skipped: list[EntryPointInfo] = []
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
        allowed = allowed_plugins()
        for entry in self._entry_points.entries():
            if allowed is not None and entry.name not in allowed:
                log.debug("not loading remsvc plugin %r: not in %s", entry.name, LOAD_PLUGINS_ENV)
                self._skipped.append(entry)
                continue
            try:
                loaded = self._entry_points.load(entry)
                plugin = loaded() if inspect.isclass(loaded) else loaded
                if entry.name in self._infos:
                    raise PluginError(
                        f"the name {entry.name!r} is already used by "
                        f"{describe(self._infos[entry.name])}"
                    )
                register_checked(self._manager, plugin, entry.name)
            except Exception as exc:
                failed = entry.failed(exc)
                self._load_errors.append(failed)
                log.warning("%s", describe_load_error(failed), exc_info=exc)
                continue
            self._infos[entry.name] = entry
            self._from_entry_points.append(entry.name)
            log.debug("loaded remsvc plugin %r from %s", entry.name, entry.origin)

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
                    f"({describe(self._infos[chosen])}); pass another name="
                )
            register_checked(self._manager, plugin, chosen)
            self._infos[chosen] = info_of_object(plugin, name=chosen, group=ENTRY_POINT_GROUP)
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

    def reload(self) -> list[EntryPointInfo]:
        with self._lock:
            self._ensure_loaded()
            for name in list(self._from_entry_points):
                self.unregister(name)
            self._load_errors = []
            self._skipped = []
            self._entry_points.refresh()
            self._load_entry_points()
            return list(self._load_errors)

    def snapshot(self) -> tuple[list[tuple[object, EntryPointInfo, list[Impl]]], list[str]]:
        """Every active plugin with its record and hook implementations, and the load
        errors as text: what one stream starts from."""
        self._ensure_loaded()
        with self._lock:
            plugins = [
                (plugin, self._infos[name], impls_of(self._manager, plugin))
                for name, plugin in self._manager.list_name_plugin()
                if name in self._infos
            ]
            return plugins, [describe_load_error(error) for error in self._load_errors]

    def infos(self) -> list[EntryPointInfo]:
        self._ensure_loaded()
        with self._lock:
            return sorted(self._infos.values(), key=lambda info: info.name)

    def load_errors(self) -> list[EntryPointInfo]:
        self._ensure_loaded()
        with self._lock:
            return list(self._load_errors)

    def skipped(self) -> list[EntryPointInfo]:
        self._ensure_loaded()
        with self._lock:
            return list(self._skipped)

    def hooks_of(self) -> dict[str, list[str]]:
        """The hooks each active plugin implements, by plugin name."""
        plugins, _ = self.snapshot()
        return {info.name: sorted({name for name, _ in impls}) for _, info, impls in plugins}


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


def list_plugins() -> list[EntryPointInfo]:
    """The active process-wide plugins, by name: where each comes from."""
    return _registry.infos()


def plugin_load_errors() -> list[EntryPointInfo]:
    """Entry points in ``remsvc.plugins`` that failed to load; ``error`` says why."""
    return _registry.load_errors()


def skipped_plugins() -> list[EntryPointInfo]:
    """Entry points in ``remsvc.plugins`` that ``REMSVC_LOAD_PLUGINS`` left out."""
    return _registry.skipped()


def plugin_hooks() -> dict[str, list[str]]:
    """``{plugin name: [hook names it implements]}`` for the active plugins."""
    return _registry.hooks_of()


def reload_plugins() -> list[EntryPointInfo]:
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
        plugins, self.errors = _registry.snapshot()
        self._manager = new_manager()
        self._infos: dict[str, EntryPointInfo] = {}
        # Which package ships a per-stream plugin is looked up only to name it in an
        # error: the lookup reads package metadata from disk, and this runs on the loop.
        self._unnamed: dict[str, object] = {}
        self._about: Any = None  # the result or response being handled, for messages
        self._stop: tuple[str, StopStream] | None = None
        seen: set[int] = set()
        for plugin, info, impls in plugins:
            self._register_guarded(info.name, impls)
            self._infos[info.name] = info
            seen.add(id(plugin))
        for index, plugin in enumerate(extra):
            if id(plugin) in seen:
                continue  # also registered process-wide; one call per event is enough
            seen.add(id(plugin))
            # The class (or module) name says which plugin it is; pluggy's canonical
            # name for an instance is only its id().
            if isinstance(plugin, (type, types.ModuleType)):
                kind = plugin.__name__
            else:
                kind = type(plugin).__name__
            name = f"hooks[{index}]:{kind}"
            register_checked(self._manager, plugin, name)  # refuses what pluggy would
            impls = impls_of(self._manager, plugin)
            self._manager.unregister(plugin)
            self._register_guarded(name, impls)
            self._unnamed[name] = plugin
        if tracing():
            self._manager.add_hookcall_monitoring(*hook_call_tracer(log))
        self._call_result: Callable[..., object] = self._manager.hook.remsvc_result

    def implemented(self, hook_name: str) -> bool:
        """Whether any plugin of this stream implements ``hook_name`` (the engine skips
        the per-result call when none does)."""
        caller: pluggy.HookCaller = getattr(self._manager.hook, hook_name)
        return bool(caller.get_hookimpls())

    def stream_started(self, stream: hookspecs.StreamInfo) -> None:
        self._about = None
        self._manager.hook.remsvc_stream_started(stream=stream)

    def result(self, result: Any, stream: hookspecs.StreamInfo) -> tuple[str, StopStream] | None:
        """Call ``remsvc_result``; returns (plugin description, exc) of the first StopStream."""
        self._about = result
        self._call_result(result=result, stream=stream)
        stop, self._stop = self._stop, None
        return stop

    def output(self, chunk: Any, stream: hookspecs.StreamInfo) -> None:
        self._about = chunk
        self._manager.hook.remsvc_output(chunk=chunk, stream=stream)

    def heartbeat(self, running: Any, stream: hookspecs.StreamInfo) -> None:
        self._about = None
        self._manager.hook.remsvc_heartbeat(running=running, stream=stream)

    def unexpected_response(self, response: Any, stream: hookspecs.StreamInfo) -> None:
        self._about = response
        self._manager.hook.remsvc_unexpected_response(response=response, stream=stream)

    def stream_finished(self, outcome: Any, stream: hookspecs.StreamInfo) -> None:
        self._about = None
        self._manager.hook.remsvc_stream_finished(outcome=outcome, stream=stream)

    def _register_guarded(self, name: str, impls: list[Impl]) -> None:
        register_guarded(self._manager, name, impls, functools.partial(self._caught, name))

    def _caught(self, name: str, hook_name: str, exc: Exception) -> None:
        """Keep what one implementation raised: the first StopStream from remsvc_result
        ends the stream once every plugin saw the result; anything else is an error."""
        if isinstance(exc, StopStream) and hook_name == "remsvc_result":
            if self._stop is None:
                self._stop = (self._describe(name), exc)
            return
        raised = (
            "StopStream, which only remsvc_result may raise; ignored"
            if isinstance(exc, StopStream)
            else f"{type(exc).__name__}: {exc}"
        )
        message = f"{self._describe(name)}: {hook_name}{self._context()} raised {raised}"
        self.errors.append(message)
        log.error("remsvc %s", message, exc_info=exc)

    def _context(self) -> str:
        return f" for tid {self._about.tid}" if self._about is not None else ""

    def _describe(self, name: str) -> str:
        info = self._infos.get(name)
        if info is None and name in self._unnamed:
            info = info_of_object(self._unnamed[name], name=name, group=ENTRY_POINT_GROUP)
            self._infos[name] = info
        return describe(info) if info else f"plugin {name!r}"
