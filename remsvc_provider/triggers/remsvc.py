"""``RemSvcTrigger``: runs one command stream inside the Airflow triggerer.

What is serialized (and so stored in the metadata database) is only what is needed
to run the stream again: the connection id, the validated commands, the stream
timeout, extra call metadata and, when the result pipeline has fail-fast checks,
its JSON spec. The connection, and with it the bearer token, is read in the
triggerer with the async connection API each time the trigger runs.

The batch is durable where the server keeps batches (``batch/1``, the reference
server with ``[batches] state_dir``): the trigger names it with a key derived from its
task instance (see :mod:`remsvc_provider._durable`), so when a triggerer dies or
restarts mid-stream and Airflow runs the trigger again elsewhere, it re-attaches:
finished commands are replayed, the running one is waited for, and nothing runs
twice. A user's kill (Airflow 3.3+ ``on_kill``) cancels the batch on the server. A
server that does not keep batches (the upstream one) gets today's behaviour: a lost
stream kills the running command and the trigger run again runs the whole batch
(*at least once*), and the task log says so in one line.

The task log shows one line per result as it arrives (any server) and the live output
of running commands, prefixed with their tid (servers that grant ``output/1``).

There is no ``cleanup()``: the trigger owns nothing. The engine shares one channel
per server and event loop among all triggers of a triggerer, so closing it when one
trigger ends would break the others; cancelling ``run()`` is what stops a stream.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Mapping, Sequence
from typing import Any

from remsvc_core.commands import Command, validate_commands
from remsvc_core.results import StreamOutcome
from remsvc_core.settings import ChannelSettings, normalise_metadata
from remsvc_core.watch import DEFAULT_OUTPUT_LIMIT, StreamWatch
from remsvc_provider._compat import BaseTrigger, TriggerEvent, trigger_event
from remsvc_provider._durable import batch_key
from remsvc_provider._event import summarized
from remsvc_provider._outputs import keep_outputs, spill_dir_for
from remsvc_provider._redact import redact, scrub_outcome
from remsvc_provider.hooks.remsvc import RemSvcHook

EVENT_COMPLETE = "complete"
EVENT_ERROR = "error"


def _summary(outcome: StreamOutcome) -> str:
    """The batch in a few words: what arrived, how the stream ended, the size of the
    output (the output itself goes to XCom, not into log lines)."""
    nonzero = sum(1 for result in outcome.results.values() if result.rc != 0)
    size = sum(len(r.out) + len(r.err) for r in outcome.results.values())
    parts = [
        f"{len(outcome.results)} of {len(outcome.commands)} result(s) in {outcome.elapsed_s:.2f}s"
    ]
    if nonzero:
        parts.append(f"{nonzero} with a non-zero exit code")
    parts.append(f"gRPC status {outcome.status_code}")
    parts.append(f"{size / 1024:.1f} KiB of output, for the task to check and push to XCom")
    return ", ".join(parts)


def error_event(message: str, error_type: str) -> TriggerEvent:
    """The event of a trigger that could send nothing: the worker fails the task with it."""
    return trigger_event({"status": EVENT_ERROR, "message": message, "error_type": error_type})


def command_inputs(commands: Sequence[Command]) -> list[dict[str, Any]]:
    """Validated commands back in input form (``tid`` and ``hsh`` are re-derived)."""
    return [{"cmd": c.cmd, "cmdtyp": c.cmdtyp, "cmdusr": c.cmdusr, "src": c.src} for c in commands]


class RemSvcTrigger(BaseTrigger):
    """Stream ``commands`` to the server of ``grpc_conn_id`` and fire one event.

    The event payload is ``{"status": "complete", "outcome": StreamOutcome.to_json()}``
    (every result that arrived, even when the stream failed), or
    ``{"status": "error", "message": ..., "error_type": ...}`` when nothing could be
    sent (unknown connection, settings that cannot be honoured, bad commands).

    :param commands: command dicts as the operator validated them.
    :param grpc_conn_id: id of a connection of type ``remsvc``.
    :param stream_timeout: seconds the whole stream may take.
    :param metadata: extra gRPC call metadata, ``[[key, value], ...]``.
    :param result_handler: JSON handler spec whose fail-fast checks run here while the
        stream runs; ``None`` when the pipeline has none.
    :param output_dir: the task try's folder where outputs larger than 8 MiB are kept as
        files instead of travelling in the event (see :mod:`remsvc_provider._outputs`).
    """

    def __init__(
        self,
        commands: Sequence[Mapping[str, Any]],
        grpc_conn_id: str = RemSvcHook.default_conn_name,
        stream_timeout: float = 3600.0,
        metadata: Sequence[Sequence[str]] | None = None,
        result_handler: Any = None,
        skip_tids: Sequence[int] | None = None,
        log_output_limit: int | None = None,
        output_dir: str | None = None,
    ) -> None:
        super().__init__()  # type: ignore[no-untyped-call]
        self.commands = [dict(c) for c in commands]
        self.grpc_conn_id = grpc_conn_id
        self.stream_timeout = float(stream_timeout)
        self.metadata = [[str(k), str(v)] for k, v in (metadata or [])]
        self.result_handler = result_handler
        self.skip_tids = sorted({int(tid) for tid in skip_tids or ()})
        self.log_output_limit = log_output_limit
        self.output_dir = output_dir
        # Known once run() has begun; on_kill needs them.
        self._settings: ChannelSettings | None = None
        self._batch_key: str | None = None

    def serialize(self) -> tuple[str, dict[str, Any]]:
        kwargs: dict[str, Any] = {
            "commands": self.commands,
            "grpc_conn_id": self.grpc_conn_id,
            "stream_timeout": self.stream_timeout,
            "metadata": self.metadata,
            "result_handler": self.result_handler,
        }
        # Newer arguments only when set: a trigger serialized without them can still be
        # rebuilt by airflow-provider-remsvc 1.0.0 (a rollback must not strand it).
        if self.skip_tids:
            kwargs["skip_tids"] = self.skip_tids
        if self.log_output_limit is not None:
            kwargs["log_output_limit"] = self.log_output_limit
        if self.output_dir is not None:
            kwargs["output_dir"] = self.output_dir
        return f"{type(self).__module__}.{type(self).__qualname__}", kwargs

    async def run(self) -> AsyncIterator[TriggerEvent]:
        settings: ChannelSettings | None = None
        try:
            batch = [c for c in validate_commands(self.commands) if c.tid not in self.skip_tids]
            metadata = normalise_metadata(self.metadata)
            settings = await RemSvcHook(grpc_conn_id=self.grpc_conn_id).aget_channel_settings()
            hooks = await self._result_hooks()
            self._settings = settings
            self._batch_key = batch_key(self.task_instance, batch)
        except Exception as exc:
            # Nothing was sent: report why and let the worker fail the task.
            yield error_event(redact(f"{exc}", settings), type(exc).__name__)
            return

        from remsvc_core.engine import run_commands

        self.log.info(
            "Streaming %d command(s) to %s (timeout %.0fs)%s",
            len(batch),
            settings.safe_description(),
            self.stream_timeout,
            f"; batch {self._batch_key}" if self._batch_key else "",
        )
        limit = DEFAULT_OUTPUT_LIMIT if self.log_output_limit is None else self.log_output_limit
        watch = StreamWatch(self.log.info, output_limit=limit)
        try:
            with spill_dir_for(self.output_dir) as spill_dir:
                outcome = await run_commands(
                    batch,
                    settings,
                    stream_timeout=self.stream_timeout,
                    metadata=metadata,
                    hooks=[*hooks, watch],
                    batch_key=self._batch_key,
                    follow=limit > 0,
                    spill_dir=spill_dir,
                )
                # Uploading to object storage blocks: not on the triggerer's loop.
                outcome = await asyncio.to_thread(keep_outputs, outcome, self.output_dir)
            outcome = scrub_outcome(outcome, settings)
        except asyncio.CancelledError:
            self.log.warning(
                "Cancelled while streaming to %s; %s",
                settings.safe_description(),
                "a server that keeps batches goes on with this one until it is re-attached "
                "or cancelled (a user's kill cancels it)"
                if self._batch_key
                else "the stream is cancelled and the server stops the command it is running",
            )
            raise
        except Exception as exc:
            yield error_event(redact(f"{exc}", settings), type(exc).__name__)
            return

        payload = outcome.to_json()
        summary = _summary(outcome)
        # The task judges exit codes against the handlers' accepted ones, so this line
        # reports what came back, never a success the task may not see.
        self.log.info("Stream to %s closed: %s", settings.safe_description(), summary)
        yield trigger_event(summarized({"status": EVENT_COMPLETE, "outcome": payload}, summary))

    async def on_kill(self) -> None:
        """A user killed the task (marked it failed or success, or cleared it; Airflow
        3.3+): cancel the batch on the server, which kills its running command. A lost
        stream (a triggerer restart or failover) does not come here, and the batch goes
        on for the trigger that Airflow runs again."""
        if self._batch_key is None or self._settings is None:
            return
        from remsvc_core.errors import CallError
        from remsvc_core.kept_batches import cancel_batch

        try:
            state = await cancel_batch(self._settings, self._batch_key)
        except CallError as exc:
            self.log.warning("Could not cancel batch %s: %s", self._batch_key, exc)
            return
        self.log.info(
            "Cancelled batch %s on %s: its running command is killed, nothing more starts "
            "(state: %s)",
            self._batch_key,
            self._settings.safe_description(),
            state.state,
        )

    async def _result_hooks(self) -> list[object]:
        if self.result_handler is None:
            return []
        from remsvc_core.handlers import resolve_handler

        # Resolving loads entry points and imports handler packages: off the loop.
        pipeline = await asyncio.to_thread(resolve_handler, self.result_handler)
        return pipeline.result_hooks()


__all__ = ["RemSvcTrigger", "command_inputs", "error_event"]
