"""The streaming engine: one RemCmdStrm per batch, every result that arrives kept.

:func:`run_commands` validates the batch, opens one bidirectional stream, writes the
commands from one task while the calling task reads responses, correlates them by
``tid`` (never by order) and calls the plugin hooks for each result as it arrives.
However the stream ends (server finished, server gone, deadline, a plugin stopping
it) the caller gets a :class:`~remsvc_core.results.StreamOutcome`; it raises only
for bad input before anything was sent, and on asyncio cancellation.

Nothing is ever sent twice: a failed attempt is retried only when not a single
command had been handed to the transport yet (or, for a batch the server keeps, by
re-attaching to it). The stream's machinery is in :mod:`remsvc_core.stream`.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Iterable, Sequence
from typing import Any

from remsvc_core import extensions, plugins
from remsvc_core.commands import as_batch
from remsvc_core.errors import SettingsError
from remsvc_core.output import OutputAssembler
from remsvc_core.plugins import StreamHooks
from remsvc_core.results import StreamOutcome
from remsvc_core.retry import NO_RETRY, RETRYABLE_CODES, RetryPolicy
from remsvc_core.settings import ChannelSettings, check_timeout
from remsvc_core.stream import Stream
from remsvc_core.synchronous import synchronous

__all__ = ["NO_RETRY", "RETRYABLE_CODES", "RetryPolicy", "run_commands", "run_commands_sync"]

#: Asked by default: silent long commands keep proxies from dropping the connection.
DEFAULT_HEARTBEAT_S = 30.0


async def run_commands(
    commands: Any,
    settings: ChannelSettings,
    *,
    stream_timeout: float = 3600.0,
    metadata: Iterable[tuple[str, str]] = (),
    hooks: Sequence[object] = (),
    retry: RetryPolicy | None = None,
    default_src: str = "",
    batch_key: str | None = None,
    follow: bool = False,
    heartbeat_s: float | None = DEFAULT_HEARTBEAT_S,
    usage: bool = False,
    spill_dir: str | os.PathLike[str] | None = None,
    spill_bytes: int | None = None,
) -> StreamOutcome:
    """Run a batch of commands over one RemCmdStrm and return everything that came back.

    ``commands`` is a list of command dicts (or strings), validated before anything is
    sent, or an already validated ``list[Command]``. ``stream_timeout`` bounds the whole
    call, retries included (gRPC deadline and a local timeout). ``metadata`` is added to
    the call; the settings' bearer token always wins for ``authorization``. ``hooks``
    are plugin objects for this stream only, on top of the process-wide ones.
    ``retry`` (default ``RetryPolicy()``) applies only while no command was written.

    Beyond the classic protocol (docs/protocol-extensions.md; a server that grants
    nothing, like the upstream one, gives today's behaviour and the log says so once):

    - ``batch_key`` names the batch so the server keeps it when the stream is lost;
      running the same key again re-attaches (finished results are replayed, nothing
      runs twice), and the engine re-attaches by itself after a dropped connection;
    - ``follow`` asks for live output: ``remsvc_output`` hooks get each chunk as it is
      printed (also asked whenever a plugin implements that hook);
    - ``heartbeat_s`` asks the server to say which commands still run whenever the
      stream is otherwise silent that long (``None``: do not ask);
    - ``usage`` asks what each command cost (``CommandResult.usage``);
    - ``spill_dir`` keeps outputs larger than ``spill_bytes`` (default 8 MiB) in files
      there instead of memory (``CommandResult.out_file``); implies live output.

    Raises :class:`CommandValidationError`, :class:`SettingsError` or
    :class:`~remsvc_core.errors.PluginError` for bad input, before sending anything.
    A failing stream does not raise: the outcome says how it ended.
    """
    if not isinstance(settings, ChannelSettings):
        raise SettingsError(
            f"settings must be a ChannelSettings, got {type(settings).__name__}; build one "
            "with remsvc_core.settings_from_fields(host, port, extras)"
        )
    batch = as_batch(commands, default_src=default_src)
    timeout = check_timeout(stream_timeout)
    call_metadata = tuple(settings.call_metadata(metadata))
    policy = retry if retry is not None else RetryPolicy()
    if not isinstance(policy, RetryPolicy):
        raise SettingsError(f"retry must be a RetryPolicy, got {type(policy).__name__}")
    if not plugins.entry_points_loaded():
        # The first stream in a process imports the installed plugins: off the loop.
        await asyncio.to_thread(plugins.get_plugin_manager)
    stream_hooks = StreamHooks(hooks)
    wanted = extensions.Wanted(
        batch_key=None if batch_key is None else extensions.check_batch_key(batch_key),
        output=follow or spill_dir is not None or stream_hooks.implemented("remsvc_output"),
        heartbeat_s=heartbeat_s,
        usage=usage,
    )
    assembler = OutputAssembler(spill_dir=spill_dir, spill_bytes=spill_bytes)
    stream = Stream(
        batch, settings, call_metadata, timeout, policy, stream_hooks, wanted, assembler
    )
    return await stream.run()


run_commands_sync = synchronous(
    run_commands,
    doc=""":func:`run_commands` for code without an event loop (scripts, the CLI, notebooks).

    Same arguments and result. Inside a thread whose event loop is already running
    (Jupyter), the stream runs on a fresh loop in a worker thread, because the calling
    thread cannot wait on itself.
    """,
)
