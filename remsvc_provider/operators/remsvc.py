"""``RemSvcOperator``: run commands on a RemSvc server from an Airflow task.

The operator is a thin adapter. It checks its arguments when the DAG is parsed and
again after templating, hands the stream to :class:`RemSvcTrigger` (the engine runs
in the triggerer) or, with ``deferrable=False``, runs the same engine inline, and
shapes the results on the worker with the result pipeline.

The order it follows when the stream has ended: the success check runs over *all*
raw results (exit codes the pipeline accepts, missing tids, the stream status); the
pipeline shapes the results; the XCom ``{"state", "results", "error_msg"}`` is
pushed; then, if the check failed, the task fails, naming every failed tid.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import timedelta
from typing import Any, NoReturn

from remsvc_core.commands import Command
from remsvc_core.results import CommandResult, StreamOutcome
from remsvc_core.settings import ChannelSettings
from remsvc_core.verdict import judge, listed
from remsvc_core.watch import DEFAULT_OUTPUT_LIMIT, StreamWatch
from remsvc_provider._arguments import (
    check_log_output_limit,
    check_static_arguments,
    default_deferrable,
    refuse_rendered_token,
    rendered_commands,
    rendered_metadata,
    spec_for_trigger,
)
from remsvc_provider._compat import AirflowException, AirflowFailException, BaseOperator
from remsvc_provider._durable import (
    ON_RETRY_CHOICES,
    batch_key,
    load_resume,
    merge_resumed,
    outcome_from_event,
    save_resume,
)
from remsvc_provider._failure import failure_message
from remsvc_provider._lineage import lineage_record, operator_lineage, report_to_hook
from remsvc_provider._outputs import check_output_dir, keep_outputs, spill_dir_for, task_folder
from remsvc_provider.hooks.remsvc import RemSvcHook
from remsvc_provider.triggers.remsvc import EVENT_COMPLETE, RemSvcTrigger, command_inputs

STATE_SUCCESS = "SUCCESS"
STATE_FAILED = "FAILED"
# The engine enforces stream_timeout itself; Airflow's own deferral timeout is a
# backstop for a trigger that never reports (for example no triggerer running).
DEFERRAL_GRACE_S = 300.0
# Stream endings a retry cannot fix, so the task fails without using its retries
# (a retry would only run the commands that did run once more). DEADLINE_EXCEEDED is
# here because the original provider documented timeouts as "not retried".
NOT_RETRIED_STATUS = frozenset(
    {"DEADLINE_EXCEEDED", "PERMISSION_DENIED", "UNAUTHENTICATED", "INVALID_ARGUMENT"}
)
# Trigger error events for mistakes in the DAG or the connection, not in the weather.
NOT_RETRIED_ERRORS = frozenset(
    {"SettingsError", "CommandValidationError", "HandlerError", "HandlerNotFoundError"}
)


class RemSvcOperator(BaseOperator):
    """Run ``commands`` on the RemSvc server of ``grpc_conn_id``.

    :param commands: list of command dicts (``cmd`` required; ``cmdtyp`` 0 shell or
        1 PowerShell; ``cmdusr``; ``src``). Templated.
    :param grpc_conn_id: Airflow connection of type ``remsvc``.
    :param stream_timeout: seconds the whole stream may take (all commands).
    :param metadata: extra gRPC call metadata, ``[(key, value), ...]``. Templated.
        ``authorization`` is refused: put a bearer token in the connection.
    :param result_handler: how results are shaped before they are pushed: a handler
        name (``"dataframe"``), a list of names (a pipeline, left to right), a name
        with options (``{"name": "rc_filter", "options": {...}}``), a Python callable
        taking ``{tid: result_dict}``, or None for the default (a list sorted by tid).
    :param deferrable: run the stream in the triggerer; ``False`` runs it on the
        worker, for installations without a triggerer. Defaults to Airflow's
        ``[operators] default_deferrable``, like every current provider's operators.
    :param on_retry: what a retry does. ``"rerun"`` (default): it runs the whole batch
        again. ``"resume"``: it reports the results of commands that already succeeded
        in an earlier try (kept in Airflow 3.3's task state store) and runs only the
        others; on Airflow 3.1-3.2 it runs the whole batch, and says so in the log.
    :param log_output_limit: bytes of each command's live output (stdout, and stderr)
        written to the task log while it runs (default 1 MiB; 0 logs none). Needs a
        server that sends live output (the reference server); every server gets one
        log line per result.
    :param output_dir: keep outputs larger than 8 MiB as files here instead of in the
        trigger event and XCom: a directory the triggerers and workers share, or an
        object storage URL (``s3://bucket/remsvc``). The result then has an empty
        ``out`` and names the file and its SHA-256 (``out_file``, ``out_sha256``).
        Needs a server that sends live output (the reference server).
    """

    # The three fields 1.0.0 templated: DAGs written for it pass "{{ params.conn }}".
    template_fields: Sequence[str] = ("grpc_conn_id", "commands", "metadata")
    template_fields_renderers = {"commands": "json", "metadata": "json"}
    ui_color = "#d6ecf3"

    def __init__(
        self,
        *,
        commands: Any,
        grpc_conn_id: str = RemSvcHook.default_conn_name,
        stream_timeout: float = 3600.0,
        metadata: Any = None,
        result_handler: Any = None,
        deferrable: bool | None = None,
        on_retry: str = "rerun",
        log_output_limit: int | None = None,
        output_dir: str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if on_retry not in ON_RETRY_CHOICES:
            raise AirflowException(
                f"RemSvc task {self.task_id!r}: on_retry={on_retry!r} is not one of "
                f"{', '.join(map(repr, ON_RETRY_CHOICES))}"
            )
        check_log_output_limit(self.task_id, log_output_limit)
        self.on_retry = on_retry
        self.log_output_limit = log_output_limit
        try:
            self.output_dir = check_output_dir(output_dir)
        except ValueError as exc:
            raise AirflowException(f"RemSvc task {self.task_id!r}: {exc}") from None
        self._running_batch: tuple[ChannelSettings, str] | None = None
        self.commands = commands
        self.grpc_conn_id = grpc_conn_id
        self.stream_timeout = stream_timeout
        self.metadata = [] if metadata is None else metadata
        self.result_handler = result_handler
        self.deferrable = default_deferrable() if deferrable is None else deferrable
        # Checked now, so a DAG with a typo fails when it is parsed, not on a worker.
        self._pipeline = check_static_arguments(
            task_id=self.task_id,
            commands=commands,
            stream_timeout=stream_timeout,
            metadata=self.metadata,
            result_handler=result_handler,
        )

    @classmethod
    def partial(cls, **kwargs: Any) -> Any:  # type: ignore[override]
        """Like ``BaseOperator.partial``, checking the static arguments at parse time too.

        Only what is given here is checked; what ``expand()`` maps over is checked when
        each mapped task instance runs.
        """
        checked = ("commands", "stream_timeout", "metadata", "result_handler")
        check_static_arguments(
            task_id=kwargs.get("task_id", "?"), **{k: kwargs[k] for k in checked if k in kwargs}
        )
        return super().partial(**kwargs)

    # -- running --

    def render_template_fields(self, context: Any, jinja_env: Any = None) -> None:
        """Render, then refuse a token in ``metadata`` before Airflow stores it."""
        super().render_template_fields(context, jinja_env)
        refuse_rendered_token(self.task_id, self)

    def execute(self, context: Any) -> Any:
        commands = self._rendered_commands(context)
        metadata = self._rendered_metadata()
        earlier = self._earlier_successes(context, commands)
        if earlier and len(earlier) == len(commands):
            self.log.info("Every command succeeded in an earlier try; nothing to run again")
            return self._report(
                context, merge_resumed(StreamOutcome(commands=[]), commands, earlier)
            )
        if self.deferrable:
            spec = spec_for_trigger(self._pipeline)
            if spec is None and self._pipeline.result_hooks():
                self.log.warning(
                    "The fail-fast checks of Python callable handlers cannot be sent to the "
                    "triggerer and do not run while the stream runs; give the handler by "
                    "name, or use deferrable=False. The success check still applies."
                )
            self.defer(
                trigger=RemSvcTrigger(
                    commands=command_inputs(commands),
                    grpc_conn_id=self.grpc_conn_id,
                    stream_timeout=float(self.stream_timeout),
                    metadata=[list(pair) for pair in metadata],
                    result_handler=spec,
                    skip_tids=sorted(earlier) or None,
                    log_output_limit=self.log_output_limit,
                    output_dir=task_folder(self.output_dir, context["ti"]),
                ),
                method_name="execute_complete",
                timeout=timedelta(seconds=float(self.stream_timeout) + DEFERRAL_GRACE_S),
            )
        batch = [c for c in commands if c.tid not in earlier]
        key = batch_key(context["ti"], batch)
        limit = DEFAULT_OUTPUT_LIMIT if self.log_output_limit is None else self.log_output_limit
        hook = RemSvcHook(grpc_conn_id=self.grpc_conn_id)
        folder = task_folder(self.output_dir, context["ti"])
        try:
            settings = hook.get_channel_settings()
            self._running_batch = (settings, key) if key else None
            with spill_dir_for(folder) as spill_dir:
                outcome = hook.run_commands(
                    batch,
                    stream_timeout=float(self.stream_timeout),
                    metadata=metadata,
                    hooks=[
                        *self._pipeline.result_hooks(),
                        StreamWatch(self.log.info, output_limit=limit),
                    ],
                    batch_key=key,
                    follow=limit > 0,
                    spill_dir=spill_dir,
                )
                outcome = keep_outputs(outcome, folder)
        except Exception as exc:
            # The engine raises only before sending (bad settings, unknown connection).
            self._fail_before_sending(context, type(exc).__name__, str(exc))
        finally:
            self._running_batch = None
        return self._report(context, merge_resumed(outcome, commands, earlier))

    def execute_complete(self, context: Any, event: Mapping[str, Any] | None = None) -> Any:
        """Resume on the worker with the trigger's event and report the outcome."""
        commands = self._rendered_commands(context)
        legacy = outcome_from_event(event or {}, commands)
        if legacy is not None:  # written by a 1.0.0 trigger during a rolling upgrade
            return self._report(context, legacy)
        if not event or event.get("status") != EVENT_COMPLETE or "outcome" not in event:
            self._fail_before_sending(
                context,
                (event or {}).get("error_type") or "error",
                (event or {}).get("message") or "the trigger ended without an event",
            )
        outcome = StreamOutcome.from_json(event["outcome"])
        earlier = self._earlier_successes(context, commands, quiet=True)
        return self._report(
            context, merge_resumed(outcome, commands, earlier) if earlier else outcome
        )

    def on_kill(self) -> None:
        """The task was killed while it ran on the worker (``deferrable=False``): cancel
        its batch on the server, so the running command is killed there too."""
        running = self._running_batch
        if running is None:
            return
        from remsvc_core.errors import CallError
        from remsvc_core.kept_batches import cancel_batch_sync

        settings, key = running
        try:
            cancel_batch_sync(settings, key)
        except CallError as exc:
            self.log.warning("Could not cancel batch %s: %s", key, exc)

    def _earlier_successes(
        self, context: Any, commands: list[Command], *, quiet: bool = False
    ) -> dict[int, CommandResult]:
        """With ``on_retry="resume"``: the results earlier tries kept for this batch."""
        if self.on_retry != "resume" or getattr(context["ti"], "try_number", 1) <= 1:
            return {}
        store = context.get("task_state_store")
        if store is None:
            if not quiet:
                self.log.warning(
                    "on_retry='resume' needs Airflow 3.3's task state store, which this "
                    "Airflow does not have: this try runs every command again"
                )
            return {}
        earlier = load_resume(store, commands)
        if earlier and not quiet:
            self.log.info(
                "Resuming: %d command(s) succeeded in an earlier try and are not run again "
                "(tids %s)",
                len(earlier),
                listed(sorted(earlier)),
            )
        return earlier

    def _fail_before_sending(self, context: Any, kind: str, message: str) -> NoReturn:
        error = f"RemSvc task {self.task_id!r} could not run its commands ({kind}): {message}"
        self._push(context, STATE_FAILED, self._shape_nothing(), error)
        if kind in NOT_RETRIED_ERRORS:
            raise AirflowFailException(error)
        raise AirflowException(error)

    # -- reporting --

    def _report(self, context: Any, outcome: StreamOutcome) -> Any:
        self._lineage = lineage_record(outcome, self.grpc_conn_id)
        report_to_hook(RemSvcHook(grpc_conn_id=self.grpc_conn_id), self._lineage)
        pipeline = self._pipeline
        raw = outcome.raw_results()
        judged = judge(outcome, pipeline.accepted_rcs)
        for error in outcome.plugin_errors:
            self.log.warning("A result plugin failed (not fatal): %s", error)
        for item in outcome.unexpected:
            self.log.warning("Ignored an unexpected response: tid %d (%s)", item.tid, item.reason)
        try:
            shaped = pipeline.apply(raw)
        except Exception as exc:
            # The results are real even if shaping them failed: keep them, sorted.
            shaped = [raw[tid] for tid in sorted(raw)]
            judged = judged.with_handler_error(str(exc))
        message = failure_message(self.task_id, judged)
        if message is not None and self.on_retry == "resume":
            self._keep_for_retry(context, outcome, pipeline.accepted_rcs)
        if message is None:
            self.log.info(
                "All %d command(s) succeeded on %s in %.2fs",
                len(outcome.commands),
                outcome.target or self.grpc_conn_id,
                outcome.elapsed_s,
            )
            return {"state": STATE_SUCCESS, "results": shaped, "error_msg": None}
        self._push(context, STATE_FAILED, shaped, message)
        if outcome.status_code in NOT_RETRIED_STATUS:
            raise AirflowFailException(f"{message} (not retried: a retry cannot fix this)")
        raise AirflowException(message)

    def _keep_for_retry(
        self, context: Any, outcome: StreamOutcome, accepted: frozenset[int]
    ) -> None:
        store = context.get("task_state_store")
        if store is None:
            return
        kept = save_resume(store, outcome.commands, outcome, accepted)
        self.log.info("Kept %d succeeded result(s) for the next try (on_retry='resume')", kept)

    def get_openlineage_facets_on_complete(self, task_instance: Any) -> Any:
        """OpenLineage facets (the OpenLineage provider calls this after the task ran):
        the server as the namespace, the commands' hashes and counts in a run facet."""
        return operator_lineage(getattr(self, "_lineage", None))

    def _push(self, context: Any, state: str, results: Any, error_msg: str | None) -> None:
        """Push the failure's XCom ourselves: a task that raises returns nothing."""
        if not self.do_xcom_push:
            return
        payload = {"state": state, "results": results, "error_msg": error_msg}
        context["ti"].xcom_push(key="return_value", value=payload)

    def _shape_nothing(self) -> Any:
        try:
            return self._pipeline.apply({})
        except Exception:
            return []

    # -- arguments after templating --

    def _rendered_commands(self, context: Any) -> list[Command]:
        return rendered_commands(
            self.task_id, self.commands, context, on_unknown_keys=self.log.warning
        )

    def _rendered_metadata(self) -> tuple[tuple[str, str], ...]:
        return rendered_metadata(self.task_id, self.metadata)


__all__ = ["RemSvcOperator"]
