"""Plugin hooks: when they fire, how failures are contained, and StopStream."""

from __future__ import annotations

import asyncio
import importlib
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pluggy
import pytest
from engine_helpers import Recorder, free_port

from remsvc_core import hookspecs
from remsvc_core.engine import NO_RETRY, run_commands
from remsvc_core.errors import StopStream
from remsvc_core.hookspecs import hookimpl
from remsvc_core.plugins import (
    PluginError,
    list_plugins,
    plugin_load_errors,
    register_plugin,
    reload_plugins,
    unregister_plugin,
)
from remsvc_core.settings import ChannelSettings

pytestmark = pytest.mark.timeout(120)


class Broken:
    @hookimpl
    def remsvc_stream_started(self, stream):
        raise RuntimeError("started went wrong")

    @hookimpl
    def remsvc_result(self, result):
        raise ValueError(f"cannot handle tid {result.tid}")


async def _wait_until(predicate, what: str, tries: int = 200, pause: float = 0.05) -> None:
    for _ in range(tries):
        if predicate():
            return
        await asyncio.sleep(pause)
    raise AssertionError(f"timed out waiting for {what}")


async def test_hooks_fire_once_per_tid_in_arrival_order(misbehaving, recorder: Recorder):
    server = misbehaving(reverse=True, repeat_tids=frozenset({3}))

    outcome = await run_commands(["a", "b", "c"], server.settings(), hooks=[recorder])

    assert outcome.complete
    assert recorder.events == [
        ("started", 1),
        ("result", 3),
        ("unexpected", ("duplicate", 3)),
        ("result", 2),
        ("result", 1),
        ("finished", "OK"),
    ]


async def test_global_and_per_stream_plugins_both_fire_once(misbehaving, recorder: Recorder):
    server = misbehaving()
    also_global = Recorder()
    register_plugin(also_global, name="global-recorder")
    register_plugin(recorder, name="recorder-twice")  # also passed per stream below

    await run_commands(["a", "b"], server.settings(), hooks=[recorder])

    assert also_global.result_tids() == [1, 2]
    assert recorder.result_tids() == [1, 2]
    unregister_plugin("global-recorder")
    await run_commands(["a"], server.settings())
    assert also_global.result_tids() == [1, 2]


async def test_hook_may_take_fewer_arguments(misbehaving):
    server = misbehaving()
    seen: list[int] = []

    class JustResult:
        @hookimpl
        def remsvc_result(self, result):
            seen.append(result.tid)

    await run_commands(["a", "b"], server.settings(), hooks=[JustResult()])
    assert seen == [1, 2]


async def test_a_broken_plugin_loses_nothing_and_silences_no_one(misbehaving, recorder):
    server = misbehaving()
    register_plugin(Broken(), name="broken-global")

    outcome = await run_commands(["a", "b", "c"], server.settings(), hooks=[recorder])

    assert outcome.complete
    assert sorted(outcome.results) == [1, 2, 3]
    assert recorder.result_tids() == [1, 2, 3]
    assert recorder.names()[0] == "started"
    errors = outcome.plugin_errors
    assert len(errors) == 4, errors
    assert errors[0].startswith("plugin 'broken-global' (module ")
    assert "remsvc_stream_started raised RuntimeError: started went wrong" in errors[0]
    assert "remsvc_result for tid 2 raised ValueError: cannot handle tid 2" in errors[2]


async def test_stop_stream_ends_the_stream_on_purpose(remsvc_server, recorder: Recorder):
    class FailFast:
        @hookimpl
        def remsvc_result(self, result):
            if result.tid == 2:
                raise StopStream("tid 2 looked wrong")

    # The recorder is registered first, so pluggy calls it after FailFast: it must
    # still see tid 2, because that result arrived and is kept.
    outcome = await run_commands(
        ["echo 1", "echo 2", "sleep 30", "echo 4"],
        remsvc_server.settings(),
        hooks=[recorder, FailFast()],
    )

    assert outcome.status_code == "CANCELLED"
    assert "stopped by plugin 'hooks[1]:FailFast'" in outcome.status_details
    assert "at tid 2: tid 2 looked wrong" in outcome.status_details
    assert sorted(outcome.results) == [1, 2]
    assert outcome.missing_tids == [3, 4]
    assert recorder.result_tids() == [1, 2]
    assert recorder.events[-1] == ("finished", "CANCELLED")
    assert outcome.plugin_errors == []
    # The server learnt of the cancellation and killed the running command.
    await _wait_until(lambda: remsvc_server.running_pids == [], "the sleep to be killed")


async def test_stop_stream_outside_remsvc_result_is_a_plugin_error(misbehaving):
    server = misbehaving()

    class StopTooEarly:
        @hookimpl
        def remsvc_stream_started(self, stream):
            raise StopStream("not here")

    outcome = await run_commands(["a", "b"], server.settings(), hooks=[StopTooEarly()])

    assert outcome.complete
    [error] = outcome.plugin_errors
    assert "only remsvc_result may raise" in error


async def test_finished_fires_when_the_server_is_unreachable(recorder: Recorder):
    settings = ChannelSettings(target=f"127.0.0.1:{free_port()}")
    outcome = await run_commands(["echo"], settings, hooks=[recorder], retry=NO_RETRY)
    assert recorder.events == [("finished", "UNAVAILABLE")]
    assert outcome.missing_tids == [1]


async def test_cancelling_the_caller_cancels_the_call(remsvc_server, recorder: Recorder):
    first_result = asyncio.Event()

    class Signal:
        @hookimpl
        def remsvc_result(self, result):
            first_result.set()

    stream = asyncio.create_task(
        run_commands(
            ["echo 1", "sleep 30", "echo 3"], remsvc_server.settings(), hooks=[recorder, Signal()]
        )
    )
    await asyncio.wait_for(first_result.wait(), timeout=30)
    await _wait_until(lambda: remsvc_server.running_pids != [], "the sleep to start")
    stream.cancel()
    with pytest.raises(asyncio.CancelledError):
        await stream

    assert recorder.events[-1] == ("finished", "CANCELLED")
    await _wait_until(lambda: remsvc_server.running_pids == [], "the sleep to be killed")


async def test_hooks_run_in_pluggys_order_each_guarded(misbehaving):
    server = misbehaving()
    order: list[str] = []

    def plugin(label: str, **opts: bool) -> object:
        class Ordered:
            @hookimpl(**opts)
            def remsvc_result(self, result):
                order.append(f"{label}{result.tid}")
                if label == "plain":
                    raise RuntimeError("plain fails, the others still run")

        return Ordered()

    # pluggy's order: tryfirst, then the most recently registered first, then trylast.
    hooks = [plugin("last", trylast=True), plugin("first", tryfirst=True), plugin("plain")]
    outcome = await run_commands(["a", "b"], server.settings(), hooks=hooks)

    assert order == ["first1", "plain1", "last1", "first2", "plain2", "last2"]
    assert len(outcome.plugin_errors) == 2
    assert "plugin 'hooks[2]:Ordered'" in outcome.plugin_errors[0]
    assert "remsvc_result for tid 1 raised RuntimeError" in outcome.plugin_errors[0]


def test_pluggy_stops_at_the_first_exception():
    """Why each stream guards every hook implementation (remsvc_core/hook_managers.py):
    pluggy's own hook call stops at the first exception, so one failing plugin would keep
    the others from seeing the event. Pinned to the installed pluggy: if this fails,
    pluggy now calls the other implementations itself, and the guards can go."""
    manager = pluggy.PluginManager(hookspecs.PROJECT_NAME)
    manager.add_hookspecs(hookspecs)
    seen: list[object] = []

    class Sees:
        @hookimpl
        def remsvc_stream_started(self, stream):
            seen.append(stream)

    class Fails:
        @hookimpl
        def remsvc_stream_started(self, stream):
            raise RuntimeError("the first implementation called fails")

    manager.register(Sees(), name="sees")  # registered first, so called last
    manager.register(Fails(), name="fails")
    with pytest.raises(RuntimeError, match="the first implementation called fails"):
        manager.hook.remsvc_stream_started(stream="a stream")
    assert seen == [], (
        f"pluggy {pluggy.__version__} called the other implementations after one raised: "
        "the guards of remsvc_core.hook_managers.register_guarded can go"
    )


# -- registration --------------------------------------------------------------------


class NoHooks:
    def remsvc_result(self, result):  # not decorated
        pass


class Misspelled:
    @hookimpl
    def remsvc_reslt(self, result):
        pass


class Wrapper:
    @hookimpl(wrapper=True)
    def remsvc_result(self, result):
        return (yield)


class WrongArgument:
    @hookimpl
    def remsvc_result(self, result, bogus):
        pass


@pytest.mark.parametrize(
    ("plugin", "message"),
    [
        (NoHooks(), "has no remsvc hook implementations"),
        (Misspelled(), "unknown hook 'remsvc_reslt'.*remsvc_result"),
        (Wrapper(), "wrapper"),
        (WrongArgument(), "bogus"),
    ],
)
def test_register_plugin_rejects_unusable_plugins(plugin, message):
    with pytest.raises(PluginError, match=message):
        register_plugin(plugin)
    assert not any(info.name == type(plugin).__name__ for info in list_plugins())


async def test_unusable_per_stream_plugin_fails_before_sending(misbehaving):
    server = misbehaving()
    with pytest.raises(PluginError, match="unknown hook"):
        await run_commands(["a"], server.settings(), hooks=[Misspelled()])
    assert server.calls == 0


def test_register_twice_and_name_clashes():
    recorder = Recorder()
    assert register_plugin(recorder, name="rec") == "rec"
    assert register_plugin(recorder, name="other") == "rec"  # same object: a no-op
    with pytest.raises(PluginError, match="already registered"):
        register_plugin(Recorder(), name="rec")
    unregister_plugin(recorder)
    with pytest.raises(PluginError, match="no plugin"):
        unregister_plugin("rec")


# -- entry points ----------------------------------------------------------------------


@pytest.fixture
def fake_distribution(tmp_path: Path) -> Iterator[Path]:
    """An installed distribution with three ``remsvc.plugins`` entry points, one broken.

    A real ``.dist-info`` on ``sys.path``: importlib.metadata finds it exactly as it
    finds a pip-installed package.
    """
    root = tmp_path / "site"
    info = root / "remsvc_fake_plugins-1.0.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: remsvc-fake-plugins\nVersion: 1.0\n"
    )
    (info / "entry_points.txt").write_text(
        "[remsvc.plugins]\n"
        "broken = remsvc_fake_broken\n"
        "good = remsvc_fake_good:GoodPlugin\n"
        "module = remsvc_fake_good\n"
    )
    (root / "remsvc_fake_broken.py").write_text(
        "raise ImportError('remsvc_fake_broken needs a library that is not installed')\n"
    )
    (root / "remsvc_fake_good.py").write_text(
        textwrap.dedent(
            """
            from remsvc_core.hookspecs import hookimpl

            SEEN = []
            MODULE_SEEN = []

            class GoodPlugin:
                @hookimpl
                def remsvc_result(self, result):
                    SEEN.append(result.tid)
                    if result.tid == 2:
                        raise KeyError("tid two")

            @hookimpl
            def remsvc_stream_finished(outcome):
                MODULE_SEEN.append(outcome.status_code)
            """
        )
    )
    sys.path.insert(0, str(root))
    importlib.invalidate_caches()
    try:
        yield root
    finally:
        sys.path.remove(str(root))
        for name in ("remsvc_fake_broken", "remsvc_fake_good"):
            sys.modules.pop(name, None)
        importlib.invalidate_caches()
        reload_plugins()


async def test_entry_point_that_fails_to_import_is_reported_and_others_load(
    fake_distribution, misbehaving
):
    errors = reload_plugins()

    [broken] = [e for e in errors if e.name == "broken"]
    assert (broken.package, broken.version) == ("remsvc-fake-plugins", "1.0")
    assert broken.origin == "package remsvc-fake-plugins 1.0"
    assert (broken.group, broken.entry_point) == ("remsvc.plugins", "remsvc_fake_broken")
    assert broken.error.startswith("ImportError: remsvc_fake_broken needs a library")
    assert broken in plugin_load_errors()
    names = {info.name: info for info in list_plugins()}
    assert names["good"].origin == "package remsvc-fake-plugins 1.0"
    assert names["good"].entry_point == "remsvc_fake_good:GoodPlugin"
    assert (names["good"].builtin, names["good"].error) == (False, None)
    assert "module" in names

    server = misbehaving()
    outcome = await run_commands(["a", "b", "c"], server.settings())

    good = sys.modules["remsvc_fake_good"]
    assert good.SEEN == [1, 2, 3]
    assert good.MODULE_SEEN == ["OK"]
    assert outcome.complete
    assert any(
        "'broken'" in e and "remsvc-fake-plugins 1.0" in e and "failed to load" in e
        for e in outcome.plugin_errors
    )
    assert any(
        e.startswith("plugin 'good' (package remsvc-fake-plugins 1.0)") and "KeyError" in e
        for e in outcome.plugin_errors
    )
