"""pluggy managers for remsvc's hooks: checking a plugin, and guarding each call.

pluggy does the calling (order, ``tryfirst``/``trylast``, argument passing, tracing
and monitoring). What remsvc adds is kept here:

- :func:`register_checked` refuses, with a message that names the fix, a plugin
  pluggy would accept but remsvc cannot use: no hook at all, a misspelled hook, a
  wrapper.
- :func:`register_guarded` keeps one plugin's exception from silencing the others.
  pluggy's own hook call stops at the first exception (``tests/engine/
  test_engine_hooks.py::test_pluggy_stops_at_the_first_exception`` pins that on the
  installed pluggy; if it ever changes, the guard can go). So a stream registers, for
  each plugin, a stand-in with the same hook implementations and the same pluggy
  options, each of which calls the plugin's and hands what it raises to the stream.
"""

from __future__ import annotations

import functools
import types
from collections.abc import Callable
from typing import Any

import pluggy

from remsvc_core import hookspecs
from remsvc_core.errors import PluginError

__all__ = ["Impl", "impls_of", "new_manager", "register_checked", "register_guarded"]

_IMPL_MARK = f"{hookspecs.PROJECT_NAME}_impl"

#: One hook implementation of a plugin: the hook's name and pluggy's record of it.
Impl = tuple[str, pluggy.HookImpl]
#: Told the hook's name and the exception when a guarded implementation raises.
OnRaise = Callable[[str, Exception], None]


def new_manager() -> pluggy.PluginManager:
    """An empty pluggy manager that knows remsvc's hook specifications."""
    manager = pluggy.PluginManager(hookspecs.PROJECT_NAME)
    manager.add_hookspecs(hookspecs)
    return manager


def impls_of(manager: pluggy.PluginManager, plugin: object) -> list[Impl]:
    """The hook implementations ``plugin`` has registered in ``manager``."""
    return [
        (caller.name, impl)
        for caller in manager.get_hookcallers(plugin) or []
        for impl in caller.get_hookimpls()
        if impl.plugin is plugin
    ]


def register_checked(manager: pluggy.PluginManager, plugin: object, name: str) -> None:
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
    impls = impls_of(manager, plugin)
    for hook_name, impl in impls:
        if not getattr(manager.hook, hook_name).has_spec() and not impl.optionalhook:
            known = ", ".join(sorted(n for n in dir(hookspecs) if n.startswith("remsvc_")))
            problems.append(f"implements unknown hook {hook_name!r} (known hooks: {known})")
        elif impl.wrapper or impl.hookwrapper:
            problems.append(f"declares {hook_name!r} as a wrapper; remsvc hooks take no wrappers")
    if not impls:
        problems.append(
            "has no remsvc hook implementations; decorate functions named after the hooks in "
            "remsvc_core.hookspecs with remsvc_core.hookspecs.hookimpl"
        )
    if problems:
        manager.unregister(plugin)
        raise PluginError(f"plugin {name!r} " + "; ".join(problems))


def register_guarded(
    manager: pluggy.PluginManager, name: str, impls: list[Impl], on_raise: OnRaise
) -> None:
    """Register, as ``name``, a stand-in implementing the hooks of ``impls`` with the
    same pluggy options; what an implementation raises goes to ``on_raise`` instead of
    ending pluggy's call. ``impls`` come from a plugin :func:`register_checked` took."""
    # Named by position, bound to its hook by specname: one plugin may implement a
    # hook twice (specname=), and both must stay.
    guarded = {
        f"impl_{index}": _guarded(hook_name, impl, on_raise)
        for index, (hook_name, impl) in enumerate(impls)
    }
    manager.register(_StandIn(**guarded), name=name)


class _StandIn(types.SimpleNamespace):
    """Holds one plugin's guarded hook functions, and lists only those to pluggy, which
    otherwise inspects every attribute of what it registers (here: once per stream)."""

    def __dir__(self) -> list[str]:
        return list(vars(self))


def _guarded(hook_name: str, impl: pluggy.HookImpl, on_raise: OnRaise) -> Callable[..., None]:
    function = impl.function

    # wraps() gives pluggy the plugin's own signature (it follows __wrapped__), so the
    # implementation is passed exactly the arguments it asks for.
    @functools.wraps(function)
    def guarded(*args: Any, **kwargs: Any) -> None:
        try:
            function(*args, **kwargs)
        except Exception as exc:
            on_raise(hook_name, exc)

    setattr(guarded, _IMPL_MARK, {**impl.opts, "specname": hook_name})
    return guarded
