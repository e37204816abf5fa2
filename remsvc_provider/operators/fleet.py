"""``RemSvcFleetOperator``: one batch on many connections from one task.

Where ``RemSvcOperator.partial(...).expand(grpc_conn_id=[...])`` makes one task
instance, one trigger and one XCom per host, this is one task: the fan-out runs in one
trigger (:class:`~remsvc_provider.triggers.fleet.RemSvcFleetTrigger`) with rate control
(``max_concurrency``), an error budget (``max_errors``) and a success threshold, and
the results of every host come back as one value, keyed by host.

The order it follows is the single task's: the success check (each host on every raw
result, then the run against the success threshold), the pipeline shapes every host's
results at once, the XCom is pushed (its shape is in :mod:`remsvc_provider._fleet_report`),
and only then, if the check failed, the task fails, naming the failing hosts.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from datetime import timedelta
from typing import Any, NoReturn

from remsvc_core.errors import RemSvcError
from remsvc_core.fleet.budget import (
    DEFAULT_MAX_CONCURRENCY,
    FleetLimits,
    check_host_count,
    check_max_concurrency,
    fleet_limits,
)
from remsvc_core.fleet.outcome import FleetOutcome
from remsvc_core.fleet.targets import FleetTarget
from remsvc_core.fleet.verdict import judge_fleet
from remsvc_core.watch import DEFAULT_OUTPUT_LIMIT, StreamWatch
from remsvc_provider._arguments import (
    check_log_output_limit,
    check_static_arguments,
    default_deferrable,
    is_static,
    refuse_rendered_token,
    rendered_commands,
    rendered_metadata,
    spec_for_trigger,
)
from remsvc_provider._compat import AirflowException, AirflowFailException, BaseOperator
from remsvc_provider._durable import batch_key
from remsvc_provider._fleet_report import fleet_failure_message, fleet_hosts
from remsvc_provider._hosts import host_connections
from remsvc_provider.hooks.remsvc import RemSvcHook
from remsvc_provider.operators.remsvc import (
    DEFERRAL_GRACE_S,
    NOT_RETRIED_ERRORS,
    NOT_RETRIED_STATUS,
    STATE_FAILED,
    STATE_SUCCESS,
)
from remsvc_provider.triggers.fleet import RemSvcFleetTrigger
from remsvc_provider.triggers.remsvc import EVENT_COMPLETE, command_inputs

__all__ = ["RemSvcFleetOperator"]


class RemSvcFleetOperator(BaseOperator):
    """Run ``commands`` on the RemSvc servers of every connection in ``grpc_conn_ids``.

    :param commands: list of command dicts, as for ``RemSvcOperator``. Templated.
    :param grpc_conn_ids: the hosts: a list of connection ids of type ``remsvc`` (each
        host is labelled by its connection id), or a mapping of host labels to
        connection ids. Templated, and may come from an upstream task's XCom.
    :param max_concurrency: hosts running at once (default 50); the next host starts
        as soon as one ends, so a slow or unreachable host holds up only its own slot.
    :param max_errors: once this many hosts failed (a count, or a percentage of hosts
        such as ``"10%"``), no new host starts; hosts already running finish, the rest
        are reported ``NOT_STARTED``. Default: every host starts. Templated.
    :param success_threshold: hosts that must succeed for the task to succeed (a count
        or a percentage); default: all of them. Templated.
    :param stream_timeout: seconds each host's stream may take (all its commands).
    :param metadata: extra gRPC call metadata for every host. Templated.
    :param result_handler: how every host's results are shaped together, by handler
        name(s) as for ``RemSvcOperator``; each result carries its ``host``
        (``"dataframe"`` gives one frame with a ``host`` column, ``"grouped"`` groups
        hosts by identical output).
    :param deferrable: run the fan-out in the triggerer, or with ``False`` on the
        worker; defaults to Airflow's ``[operators] default_deferrable``, like
        ``RemSvcOperator``.
    :param log_output_limit: bytes of each command's live output logged per host
        (default 1 MiB; 0 logs none).
    """

    template_fields: Sequence[str] = (
        "commands",
        "metadata",
        "grpc_conn_ids",
        "max_errors",
        "success_threshold",
    )
    template_fields_renderers = {"commands": "json", "metadata": "json", "grpc_conn_ids": "json"}
    ui_color = "#c3e3ee"

    def __init__(
        self,
        *,
        commands: Any,
        grpc_conn_ids: Any,
        max_concurrency: int = DEFAULT_MAX_CONCURRENCY,
        max_errors: int | str | None = None,
        success_threshold: int | str | None = None,
        stream_timeout: float = 3600.0,
        metadata: Any = None,
        result_handler: Any = None,
        deferrable: bool | None = None,
        log_output_limit: int | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        check_log_output_limit(self.task_id, log_output_limit)
        self.commands = commands
        self.grpc_conn_ids = grpc_conn_ids
        self.max_concurrency = max_concurrency
        self.max_errors = max_errors
        self.success_threshold = success_threshold
        self.stream_timeout = stream_timeout
        self.metadata = [] if metadata is None else metadata
        self.result_handler = result_handler
        self.deferrable = default_deferrable() if deferrable is None else deferrable
        self.log_output_limit = log_output_limit
        self._running: tuple[list[FleetTarget], str] | None = None
        # Checked now, so a DAG with a typo fails when it is parsed, not on a worker.
        self._pipeline = check_static_arguments(
            task_id=self.task_id,
            commands=commands,
            stream_timeout=stream_timeout,
            metadata=self.metadata,
            result_handler=result_handler,
        )
        try:
            check_max_concurrency(max_concurrency)
            if is_static(grpc_conn_ids):
                host_connections(grpc_conn_ids)
            if is_static(max_errors):
                check_host_count(max_errors, "max_errors", minimum=1)
            if is_static(success_threshold):
                check_host_count(success_threshold, "success_threshold", minimum=1)
        except RemSvcError as exc:
            raise AirflowException(f"RemSvc task {self.task_id!r}: {exc}") from exc

    # -- running --

    def render_template_fields(self, context: Any, jinja_env: Any = None) -> None:
        """Render, then refuse a token in ``metadata`` before Airflow stores it."""
        super().render_template_fields(context, jinja_env)
        refuse_rendered_token(self.task_id, self)

    def execute(self, context: Any) -> Any:
        commands = rendered_commands(self.task_id, self.commands, context)
        metadata = rendered_metadata(self.task_id, self.metadata)
        hosts = self._rendered_hosts()
        limits = self._limits(len(hosts))
        if self.deferrable:
            waves = math.ceil(len(hosts) / limits.max_concurrency)
            self.defer(
                trigger=RemSvcFleetTrigger(
                    commands=command_inputs(commands),
                    hosts=[[label, conn_id] for label, conn_id in hosts],
                    stream_timeout=float(self.stream_timeout),
                    metadata=[list(pair) for pair in metadata],
                    result_handler=spec_for_trigger(self._pipeline),
                    accepted_rcs=sorted(self._pipeline.accepted_rcs),
                    max_concurrency=limits.max_concurrency,
                    max_errors=self.max_errors,
                    success_threshold=self.success_threshold,
                    log_output_limit=self.log_output_limit,
                ),
                method_name="execute_complete",
                # Each wave of hosts may take the whole stream_timeout.
                timeout=timedelta(seconds=float(self.stream_timeout) * waves + DEFERRAL_GRACE_S),
            )
        from remsvc_core.fleet.runner import run_fleet_sync

        targets = self._targets(context, hosts)
        key = batch_key(context["ti"], commands)
        limit = DEFAULT_OUTPUT_LIMIT if self.log_output_limit is None else self.log_output_limit
        self._running = (targets, key) if key else None
        try:
            fleet = run_fleet_sync(
                commands,
                targets,
                max_concurrency=limits.max_concurrency,
                max_errors=self.max_errors,
                success_threshold=self.success_threshold,
                accepted_rcs=self._pipeline.accepted_rcs,
                stream_timeout=float(self.stream_timeout),
                metadata=metadata,
                host_hooks=lambda host: [
                    *self._pipeline.result_hooks(),
                    StreamWatch(self.log.info, output_limit=limit, host=host),
                ],
                batch_key=key,
                follow=limit > 0,
            )
        finally:
            self._running = None
        return self._report(context, fleet, hosts)

    def execute_complete(self, context: Any, event: Mapping[str, Any] | None = None) -> Any:
        """Resume on the worker with the trigger's event and report every host."""
        hosts = self._rendered_hosts()
        if not event or event.get("status") != EVENT_COMPLETE or "fleet" not in event:
            self._fail_before_sending(
                context,
                (event or {}).get("error_type") or "error",
                (event or {}).get("message") or "the trigger ended without an event",
            )
        return self._report(context, FleetOutcome.from_json(event["fleet"]), hosts)

    def on_kill(self) -> None:
        """Killed while it ran on the worker (``deferrable=False``): cancel every host's
        batch on its server, so the commands running there are killed too."""
        running = self._running
        if running is None:
            return
        from remsvc_core.errors import CallError
        from remsvc_core.fleet.runner import host_batch_key
        from remsvc_core.kept_batches import cancel_batch_sync

        targets, key = running
        for target in targets:
            try:
                cancel_batch_sync(target.settings, host_batch_key(key, target.host))
            except CallError as exc:
                self.log.warning("Could not cancel the batch on %s: %s", target.host, exc)

    # -- arguments after templating --

    def _rendered_hosts(self) -> list[tuple[str, str]]:
        try:
            return host_connections(self.grpc_conn_ids)
        except RemSvcError as exc:
            raise AirflowFailException(f"RemSvc task {self.task_id!r}: {exc}") from exc

    def _limits(self, hosts: int) -> FleetLimits:
        try:
            return fleet_limits(
                hosts,
                max_concurrency=self.max_concurrency,
                max_errors=self.max_errors,
                success_threshold=self.success_threshold,
            )
        except RemSvcError as exc:
            raise AirflowFailException(f"RemSvc task {self.task_id!r}: {exc}") from exc

    def _targets(self, context: Any, hosts: list[tuple[str, str]]) -> list[FleetTarget]:
        """Every host's settings, read on the worker (``deferrable=False``)."""
        targets = []
        for label, conn_id in hosts:
            try:
                settings = RemSvcHook(grpc_conn_id=conn_id).get_channel_settings()
            except Exception as exc:
                self._fail_before_sending(context, type(exc).__name__, f"{conn_id}: {exc}")
            targets.append(FleetTarget(label, settings))
        return targets

    # -- reporting --

    def _report(self, context: Any, fleet: FleetOutcome, hosts: list[tuple[str, str]]) -> Any:
        pipeline = self._pipeline
        judged = judge_fleet(fleet, pipeline.accepted_rcs)
        for run in fleet.hosts:
            for error in run.outcome.plugin_errors if run.outcome else ():
                self.log.warning("%s: a result plugin failed (not fatal): %s", run.host, error)
        try:
            shaped = pipeline.apply(fleet)
        except Exception as exc:
            # The results are real even if shaping them failed: keep them, host by host.
            shaped = fleet.raw_results()
            judged = judged.with_handler_error(str(exc))
        message = fleet_failure_message(self.task_id, judged)
        payload = {
            "state": STATE_SUCCESS if message is None else STATE_FAILED,
            "results": shaped,
            "error_msg": message,
            "hosts": fleet_hosts(fleet, judged, dict(hosts)),
        }
        if message is None:
            self.log.info(
                "%d of %d host(s) succeeded (%d needed) in %.2fs%s",
                len(judged.succeeded),
                judged.hosts,
                judged.required,
                fleet.elapsed_s,
                f"; failed: {', '.join(judged.failed_hosts)}" if judged.failed else "",
            )
            return payload
        self._push(context, payload)
        statuses = {verdict.status_code for _, verdict in judged.failed}
        if statuses and statuses <= NOT_RETRIED_STATUS and not judged.handler_error:
            raise AirflowFailException(f"{message} (not retried: a retry cannot fix this)")
        raise AirflowException(message)

    def _fail_before_sending(self, context: Any, kind: str, message: str) -> NoReturn:
        error = f"RemSvc task {self.task_id!r} could not run its commands ({kind}): {message}"
        try:
            nothing = self._pipeline.apply([])
        except Exception:
            nothing = []
        self._push(
            context, {"state": STATE_FAILED, "results": nothing, "error_msg": error, "hosts": {}}
        )
        if kind in NOT_RETRIED_ERRORS:
            raise AirflowFailException(error)
        raise AirflowException(error)

    def _push(self, context: Any, payload: dict[str, Any]) -> None:
        """Push the failure's XCom ourselves: a task that raises returns nothing."""
        if self.do_xcom_push:
            context["ti"].xcom_push(key="return_value", value=payload)
