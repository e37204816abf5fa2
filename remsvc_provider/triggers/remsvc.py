"""``RemSvcTrigger``: runs one command stream inside the Airflow triggerer.

What is serialized (and so stored in the metadata database) is only what is needed
to run the stream again: the connection id, the validated commands, the stream
timeout, extra call metadata and, when the result pipeline has fail-fast checks,
its JSON spec. The connection, and with it the bearer token, is read in the
triggerer with the async connection API each time the trigger runs.

If the task is cancelled (marked failed or success, cleared, timed out) or the
triggerer stops, the run is cancelled, which cancels the gRPC call; the reference
server then kills the command that is running. A triggerer that dies mid-stream
hands the trigger to another triggerer, which runs the whole batch again: commands
run *at least once*, not exactly once.

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
from remsvc_provider._compat import BaseTrigger, TriggerEvent, trigger_event
from remsvc_provider._event import summarized
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
    """

    def __init__(
        self,
        commands: Sequence[Mapping[str, Any]],
        grpc_conn_id: str = RemSvcHook.default_conn_name,
        stream_timeout: float = 3600.0,
        metadata: Sequence[Sequence[str]] | None = None,
        result_handler: Any = None,
    ) -> None:
        super().__init__()  # type: ignore[no-untyped-call]
        self.commands = [dict(c) for c in commands]
        self.grpc_conn_id = grpc_conn_id
        self.stream_timeout = float(stream_timeout)
        self.metadata = [[str(k), str(v)] for k, v in (metadata or [])]
        self.result_handler = result_handler

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (
            f"{type(self).__module__}.{type(self).__qualname__}",
            {
                "commands": self.commands,
                "grpc_conn_id": self.grpc_conn_id,
                "stream_timeout": self.stream_timeout,
                "metadata": self.metadata,
                "result_handler": self.result_handler,
            },
        )

    async def run(self) -> AsyncIterator[TriggerEvent]:
        settings: ChannelSettings | None = None
        try:
            commands = validate_commands(self.commands)
            metadata = normalise_metadata(self.metadata)
            settings = await RemSvcHook(grpc_conn_id=self.grpc_conn_id).aget_channel_settings()
            hooks = await self._result_hooks()
        except Exception as exc:
            # Nothing was sent: report why and let the worker fail the task.
            yield trigger_event(
                {
                    "status": EVENT_ERROR,
                    "message": redact(f"{exc}", settings),
                    "error_type": type(exc).__name__,
                }
            )
            return

        from remsvc_core.engine import run_commands

        self.log.info(
            "Streaming %d command(s) to %s (timeout %.0fs)",
            len(commands),
            settings.safe_description(),
            self.stream_timeout,
        )
        try:
            outcome = await run_commands(
                commands,
                settings,
                stream_timeout=self.stream_timeout,
                metadata=metadata,
                hooks=hooks,
            )
            outcome = scrub_outcome(outcome, settings)
        except asyncio.CancelledError:
            self.log.warning(
                "Cancelled while streaming to %s; the stream is cancelled and the server "
                "stops the command it is running",
                settings.safe_description(),
            )
            raise
        except Exception as exc:
            yield trigger_event(
                {
                    "status": EVENT_ERROR,
                    "message": redact(f"{exc}", settings),
                    "error_type": type(exc).__name__,
                }
            )
            return

        payload = outcome.to_json()
        summary = _summary(outcome)
        # The task judges exit codes against the handlers' accepted ones, so this line
        # reports what came back, never a success the task may not see.
        self.log.info("Stream to %s closed: %s", settings.safe_description(), summary)
        yield trigger_event(summarized({"status": EVENT_COMPLETE, "outcome": payload}, summary))

    async def _result_hooks(self) -> list[object]:
        if self.result_handler is None:
            return []
        from remsvc_core.handlers import resolve_handler

        # Resolving loads entry points and imports handler packages: off the loop.
        pipeline = await asyncio.to_thread(resolve_handler, self.result_handler)
        return pipeline.result_hooks()


__all__ = ["RemSvcTrigger", "command_inputs"]
