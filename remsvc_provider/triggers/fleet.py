"""``RemSvcFleetTrigger``: one batch on many connections, from one trigger.

The fan-out runs inside the triggerer as one coroutine (:func:`remsvc_core.fleet.
run_fleet`): at most ``max_concurrency`` streams at once, no new host once
``max_errors`` failed, each host's channel closed when its stream ends. What is
serialized is what :class:`~remsvc_provider.triggers.remsvc.RemSvcTrigger` stores,
with ``hosts`` (label and connection id pairs) in place of one connection id; the
optional arguments only when they are set. Connections, and with them the tokens, are
read in the triggerer each time the trigger runs.

Each host's batch is durable with a server that keeps batches: the fan-out's key is
derived from the task instance like a single task's, and each host's from it and the
host's label, so a trigger that Airflow runs again (failover, restart) re-attaches
host by host and runs nothing twice. A user's kill cancels every host's batch.

The task log shows a line as each host ends, and each host's result lines and live
output prefixed with its label.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Mapping, Sequence
from typing import Any

from remsvc_core.commands import validate_commands
from remsvc_core.errors import SettingsError
from remsvc_core.fleet.budget import DEFAULT_MAX_CONCURRENCY
from remsvc_core.fleet.outcome import SUCCESS, HostRun
from remsvc_core.fleet.targets import FleetTarget
from remsvc_core.settings import ChannelSettings, normalise_metadata
from remsvc_core.watch import DEFAULT_OUTPUT_LIMIT, StreamWatch
from remsvc_provider._compat import BaseTrigger, TriggerEvent, trigger_event
from remsvc_provider._durable import batch_key
from remsvc_provider._redact import redact, scrub_outcome
from remsvc_provider.hooks.remsvc import RemSvcHook
from remsvc_provider.triggers.remsvc import EVENT_COMPLETE, error_event

__all__ = ["RemSvcFleetTrigger"]

#: Connections read at once when the trigger starts (each asks Airflow's API).
_LOOKUPS_AT_ONCE = 16


class RemSvcFleetTrigger(BaseTrigger):
    """Run ``commands`` on every host of ``hosts`` and fire one event.

    The payload is ``{"status": "complete", "fleet": FleetOutcome.to_json()}`` (every
    host's results, even those of hosts that failed), or ``{"status": "error",
    "message": ..., "error_type": ...}`` when nothing could be sent (a connection that
    does not exist or cannot be honoured, bad commands).

    :param commands: command dicts as the operator validated them.
    :param hosts: ``[[label, conn_id], ...]``, in the order to start them.
    :param stream_timeout: seconds each host's stream may take.
    :param metadata: extra gRPC call metadata, ``[[key, value], ...]``.
    :param result_handler: JSON handler spec whose fail-fast checks run per host.
    :param accepted_rcs: exit codes that count as success (default ``[0]``).
    :param max_concurrency: hosts running at once (default 50).
    :param max_errors: failed hosts after which no new host starts (a count, or a
        percentage such as ``"10%"``); None: every host starts.
    :param success_threshold: hosts that must succeed (a count or a percentage);
        None: all of them.
    :param log_output_limit: bytes of each command's live output logged per host.
    """

    def __init__(
        self,
        commands: Sequence[Mapping[str, Any]],
        hosts: Sequence[Sequence[str]],
        stream_timeout: float = 3600.0,
        metadata: Sequence[Sequence[str]] | None = None,
        result_handler: Any = None,
        accepted_rcs: Sequence[int] | None = None,
        max_concurrency: int = DEFAULT_MAX_CONCURRENCY,
        max_errors: int | str | None = None,
        success_threshold: int | str | None = None,
        log_output_limit: int | None = None,
    ) -> None:
        super().__init__()  # type: ignore[no-untyped-call]
        self.commands = [dict(c) for c in commands]
        self.hosts = [[str(label), str(conn_id)] for label, conn_id in hosts]
        self.stream_timeout = float(stream_timeout)
        self.metadata = [[str(k), str(v)] for k, v in (metadata or [])]
        self.result_handler = result_handler
        self.accepted_rcs = sorted({int(code) for code in accepted_rcs or (0,)})
        self.max_concurrency = int(max_concurrency)
        self.max_errors = max_errors
        self.success_threshold = success_threshold
        self.log_output_limit = log_output_limit
        # Known once run() has begun; on_kill needs them.
        self._targets: list[FleetTarget] = []
        self._batch_key: str | None = None

    def serialize(self) -> tuple[str, dict[str, Any]]:
        kwargs: dict[str, Any] = {
            "commands": self.commands,
            "hosts": self.hosts,
            "stream_timeout": self.stream_timeout,
            "metadata": self.metadata,
        }
        # The optional arguments only when set, as RemSvcTrigger does.
        optional = {
            "result_handler": (self.result_handler, None),
            "accepted_rcs": (self.accepted_rcs, [0]),
            "max_concurrency": (self.max_concurrency, DEFAULT_MAX_CONCURRENCY),
            "max_errors": (self.max_errors, None),
            "success_threshold": (self.success_threshold, None),
            "log_output_limit": (self.log_output_limit, None),
        }
        kwargs.update({name: value for name, (value, unset) in optional.items() if value != unset})
        return f"{type(self).__module__}.{type(self).__qualname__}", kwargs

    async def run(self) -> AsyncIterator[TriggerEvent]:
        try:
            batch = validate_commands(self.commands)
            metadata = normalise_metadata(self.metadata)
            self._targets = await self._read_connections()
            pipeline = await self._pipeline()
            self._batch_key = batch_key(self.task_instance, batch)
        except Exception as exc:
            # Nothing was sent: report why and let the worker fail the task.
            yield error_event(self._redact(str(exc)), type(exc).__name__)
            return

        from remsvc_core.fleet.runner import run_fleet

        limit = DEFAULT_OUTPUT_LIMIT if self.log_output_limit is None else self.log_output_limit
        done = 0

        def host_hooks(host: str) -> list[object]:
            checks = pipeline.result_hooks() if pipeline is not None else []
            return [*checks, StreamWatch(self.log.info, output_limit=limit, host=host)]

        def host_done(run: HostRun) -> None:
            nonlocal done
            done += 1
            outcome = run.outcome
            assert outcome is not None
            self.log.log(
                logging.INFO if run.state == SUCCESS else logging.WARNING,
                "%s: %s, %d of %d result(s), stream %s, in %.2fs (%d of %d host(s) done)",
                run.host,
                run.state,
                len(outcome.results),
                len(outcome.commands),
                outcome.status_code,
                outcome.elapsed_s,
                done,
                len(self._targets),
            )

        self.log.info(
            "Fan-out of %d command(s) to %d host(s), at most %d at once (timeout %.0fs per host)%s",
            len(batch),
            len(self._targets),
            self.max_concurrency,
            self.stream_timeout,
            f"; batch {self._batch_key}" if self._batch_key else "",
        )
        try:
            fleet = await run_fleet(
                batch,
                self._targets,
                max_concurrency=self.max_concurrency,
                max_errors=self.max_errors,
                success_threshold=self.success_threshold,
                accepted_rcs=self.accepted_rcs,
                stream_timeout=self.stream_timeout,
                metadata=metadata,
                host_hooks=host_hooks,
                on_host_done=host_done,
                batch_key=self._batch_key,
                follow=limit > 0,
            )
        except asyncio.CancelledError:
            self.log.warning(
                "Cancelled during the fan-out; %s",
                "servers that keep batches go on with theirs until they are re-attached or "
                "cancelled (a user's kill cancels them)"
                if self._batch_key
                else "every open stream is cancelled",
            )
            raise
        except Exception as exc:
            yield error_event(self._redact(str(exc)), type(exc).__name__)
            return
        settings = {target.host: target.settings for target in self._targets}
        for run in fleet.hosts:
            if run.outcome is not None:
                scrub_outcome(run.outcome, settings[run.host])
        self.log.info(
            "Fan-out ended in %.2fs: %d succeeded, %d failed, %d not started",
            fleet.elapsed_s,
            len(fleet.in_state("SUCCESS")),
            len(fleet.in_state("FAILED")),
            len(fleet.in_state("NOT_STARTED")),
        )
        yield trigger_event({"status": EVENT_COMPLETE, "fleet": fleet.to_json()})

    async def on_kill(self) -> None:
        """A user killed the task (Airflow 3.3+): cancel every host's batch on its server,
        which kills the command running there."""
        if self._batch_key is None or not self._targets:
            return
        from remsvc_core.errors import CallError
        from remsvc_core.fleet.runner import host_batch_key
        from remsvc_core.kept_batches import cancel_batch

        async def cancel(target: FleetTarget) -> None:
            assert self._batch_key is not None
            key = host_batch_key(self._batch_key, target.host)
            try:
                await cancel_batch(target.settings, key)
            except CallError as exc:
                self.log.warning("Could not cancel batch %s on %s: %s", key, target.host, exc)

        await asyncio.gather(*(cancel(target) for target in self._targets))
        self.log.info("Cancelled the fan-out's batches on %d host(s)", len(self._targets))

    async def _read_connections(self) -> list[FleetTarget]:
        """Every host's settings, read from its connection (a few at a time); one
        error naming every connection that cannot be used."""
        gate = asyncio.Semaphore(_LOOKUPS_AT_ONCE)

        async def read(conn_id: str) -> ChannelSettings | BaseException:
            async with gate:
                try:
                    return await RemSvcHook(grpc_conn_id=conn_id).aget_channel_settings()
                except Exception as exc:
                    return exc

        found = await asyncio.gather(*(read(conn_id) for _, conn_id in self.hosts))
        errors = [
            (conn_id, result)
            for (_, conn_id), result in zip(self.hosts, found, strict=True)
            if isinstance(result, BaseException)
        ]
        if errors:
            shown = "; ".join(f"{conn_id}: {exc}" for conn_id, exc in errors[:10])
            more = f"; and {len(errors) - 10} more" if len(errors) > 10 else ""
            message = (
                f"{len(errors)} of {len(self.hosts)} connection(s) cannot be used, so no "
                f"host was started: {shown}{more}"
            )
            # Settings that cannot be honoured are the DAG's mistake, not the weather's.
            if all(isinstance(exc, SettingsError) for _, exc in errors):
                raise SettingsError(message)
            raise RuntimeError(message)
        return [
            FleetTarget(label, settings)
            for (label, _), settings in zip(self.hosts, found, strict=True)
            if isinstance(settings, ChannelSettings)
        ]

    async def _pipeline(self) -> Any:
        if self.result_handler is None:
            return None
        from remsvc_core.handlers import resolve_handler

        # Resolving loads entry points and imports handler packages: off the loop.
        return await asyncio.to_thread(resolve_handler, self.result_handler)

    def _redact(self, text: str) -> str:
        for target in self._targets:
            text = redact(text, target.settings)
        return text
