"""The hooks a remsvc plugin can implement: the plugin author's reference.

remsvc uses `pluggy <https://pluggy.readthedocs.io>`_ with the project name
``"remsvc"``. A plugin is a module, a class instance or any object whose functions are
decorated with :data:`hookimpl` and named after one of the specifications below::

    from remsvc_core.hookspecs import hookimpl

    class FailFast:
        @hookimpl
        def remsvc_result(self, result, stream):
            if result.rc != 0:
                raise StopStream(f"tid {result.tid} exited {result.rc}")

A hook implementation may accept any subset of the arguments its specification
names (pluggy passes them by name), so ``def remsvc_result(result)`` is fine.

Making a plugin active
    * install a package that declares an entry point in the group ``remsvc.plugins``
      (``[project.entry-points."remsvc.plugins"] myplugin = "mypkg.plugin"``, naming
      a module, an object, or a class that is instantiated without arguments); it is
      loaded the first time a stream runs in the process, and one that fails to
      import is reported (:func:`remsvc_core.plugins.plugin_load_errors` and every
      outcome's ``plugin_errors``) without keeping the others out;
    * or call :func:`remsvc_core.plugins.register_plugin` with the object;
    * or pass it for one stream only: ``run_commands(..., hooks=[FailFast()])``.

How hooks are called
    * On the event loop that runs the stream, synchronously, between reading one
      response and the next. Keep them quick and never block (no network calls, no
      ``time.sleep``): in Airflow they run inside the triggerer, next to every other
      deferred task. Hand slow work to a queue or a thread.
    * Each implementation is called on its own. An exception in one is logged and
      recorded in :attr:`StreamOutcome.plugin_errors` (naming the plugin and its
      package) and never reaches the other plugins, the stream or its results. The
      one exception is :class:`~remsvc_core.errors.StopStream` from
      :func:`remsvc_result`, see there.
    * Implementations run in pluggy's order: the most recently registered first,
      ``tryfirst``/``trylast`` respected. Wrappers (``wrapper=True`` /
      ``hookwrapper=True``) are not supported: such a plugin is refused when it is
      registered (:class:`~remsvc_core.errors.PluginError`), as is one that implements
      no hook, a misspelled hook, or a hook with arguments its specification lacks.
    * Return values are ignored: hooks observe a stream, they do not steer it (except
      by raising :class:`~remsvc_core.errors.StopStream`).
    * The objects passed in are frozen dataclasses (:class:`StreamInfo`,
      :class:`~remsvc_core.results.CommandResult`,
      :class:`~remsvc_core.results.UnexpectedResponse`) except the
      :class:`~remsvc_core.results.StreamOutcome` given to
      :func:`remsvc_stream_finished`; treat that one as read-only too.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import pluggy

if TYPE_CHECKING:
    from collections.abc import Mapping

    from remsvc_core.commands import Command
    from remsvc_core.output import OutputChunk
    from remsvc_core.results import CommandResult, StreamOutcome, UnexpectedResponse

PROJECT_NAME = "remsvc"

#: Decorates the specifications below (used by remsvc itself).
hookspec = pluggy.HookspecMarker(PROJECT_NAME)
#: Decorates a plugin's hook implementations.
hookimpl = pluggy.HookimplMarker(PROJECT_NAME)


@dataclass(frozen=True)
class StreamInfo:
    """Which stream a hook call belongs to.

    ``stream_id`` is unique per :func:`~remsvc_core.engine.run_commands` call (a hex
    string), ``target`` the server's ``host:port``, ``commands`` the validated batch in
    tid order, and ``attempt`` the connection attempt that carried it (1, or more when
    the server was unreachable at first and the engine retried before sending anything).
    """

    stream_id: str
    target: str
    commands: tuple[Command, ...]
    attempt: int = 1


@hookspec
def remsvc_stream_started(stream: StreamInfo) -> None:
    """The stream is connected and its first command is about to be written.

    Fires once per stream. It does not fire when the server could not be reached at
    all (then only :func:`remsvc_stream_finished` fires); ``stream.attempt`` says how
    many connection attempts that took. The return value is ignored.
    """


@hookspec
def remsvc_result(result: CommandResult, stream: StreamInfo) -> None:
    """One command's result has arrived.

    Fires once per tid, in the order the responses arrive (which need not be command
    order), before the next response is read. A repeated or unknown tid does not fire
    this hook; it fires :func:`remsvc_unexpected_response` instead. ``result.cmd`` is
    the command that was sent (from the client's own batch, never from the response,
    so there is no need to look it up in ``stream.commands``: a search of the batch
    per result is quadratic work on the event loop) and ``result.latency_s`` the time
    from writing it to reading its answer. The return value is ignored.

    Raise :class:`remsvc_core.errors.StopStream` to end the stream on purpose (a
    fail-fast check): the engine still calls the remaining plugins for this result,
    then cancels the call. Every result that arrived is kept, the commands not yet
    answered are reported missing, and the outcome's status is ``CANCELLED`` with
    details naming the plugin and the exception's message.
    """


@hookspec
def remsvc_output(chunk: OutputChunk, stream: StreamInfo) -> None:
    """A running command printed something (live output, ``output/1``).

    Fires for each new piece of a command's stdout or stderr, in order per command
    and stream, while it runs; only when the server granted live output (the
    reference server does; the upstream one sends output only with the result) and
    the stream asked for it (``run_commands(..., follow=True)``, or any plugin
    implementing this hook). ``chunk.tid`` names the command, ``chunk.stream`` is
    ``"stdout"`` or ``"stderr"``, ``chunk.data`` the raw bytes (a chunk can end inside a
    line or a multi-byte character; ``chunk.text`` decodes leniently) and
    ``chunk.offset`` where it starts in that stream. A chunk sent again after a
    re-attach never fires twice. The result still carries the whole output (or the
    file it was spilled to), so a plugin may grep or count here and keep nothing.
    The return value is ignored.
    """


@hookspec
def remsvc_heartbeat(running: Mapping[int, float], stream: StreamInfo) -> None:
    """The server says which of this stream's commands still run (``heartbeat/1``).

    ``running`` maps each running command's tid to the seconds it has run. It fires
    when the server sent nothing else for the heartbeat interval while a command ran,
    so it tells "still running" from "hung", and only against a server that granted
    heartbeats. The return value is ignored.
    """


@hookspec
def remsvc_unexpected_response(response: UnexpectedResponse, stream: StreamInfo) -> None:
    """The server sent a response the client did not ask for.

    ``response.reason`` is ``"duplicate"`` (a tid answered twice; the first answer is
    kept and this one is not), ``"unknown"`` (a tid that was never sent) or
    ``"malformed"`` (bytes that do not parse as a response; ``tid`` is 0). It is also
    recorded in :attr:`StreamOutcome.unexpected`. The return value is ignored.
    """


@hookspec
def remsvc_stream_finished(outcome: StreamOutcome, stream: StreamInfo) -> None:
    """The stream is over, however it ended; fires exactly once per stream.

    ``outcome`` holds every result that arrived, the missing tids, the final gRPC
    status (``outcome.status_code`` is ``"OK"`` when the server ended the stream
    normally) and the plugin errors so far. It also fires when the server was never
    reached and when the caller cancelled the stream (status ``CANCELLED``), so a
    plugin can release what it acquired in :func:`remsvc_stream_started`. The return
    value is ignored.
    """
