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

from remsvc_core.commands import Command, validate_commands
from remsvc_core.errors import RemSvcError
from remsvc_core.handlers import ResultPipeline, resolve_handler
from remsvc_core.results import StreamOutcome
from remsvc_core.settings import check_timeout, user_metadata
from remsvc_core.verdict import judge
from remsvc_provider._compat import AirflowException, AirflowFailException, BaseOperator, conf
from remsvc_provider._failure import failure_message
from remsvc_provider._lineage import lineage_record, operator_lineage, report_to_hook
from remsvc_provider.hooks.remsvc import RemSvcHook
from remsvc_provider.triggers.remsvc import EVENT_COMPLETE, RemSvcTrigger, command_inputs

STATE_SUCCESS = "SUCCESS"
STATE_FAILED = "FAILED"
# The engine enforces stream_timeout itself; Airflow's own deferral timeout is a
# backstop for a trigger that never reports (for example no triggerer running).
DEFERRAL_GRACE_S = 300.0
_JINJA_MARKERS = ("{{", "{%", "{#")
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
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
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
        """Render, then check ``metadata`` before Airflow stores the rendered values.

        Airflow keeps every rendered template field (``rendered_task_instance_fields``)
        as soon as rendering ends; a token templated into ``metadata`` must be refused
        before that, and never be kept: its values are blanked on the way out.
        """
        super().render_template_fields(context, jinja_env)
        try:
            check_metadata(self.metadata)
        except RemSvcError as exc:
            self.metadata = _blanked(self.metadata)
            raise AirflowFailException(f"RemSvc task {self.task_id!r}: {exc}") from None

    def execute(self, context: Any) -> Any:
        commands = self._rendered_commands(context)
        metadata = self._rendered_metadata()
        if self.deferrable:
            spec = _spec_for_trigger(self._pipeline)
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
                ),
                method_name="execute_complete",
                timeout=timedelta(seconds=float(self.stream_timeout) + DEFERRAL_GRACE_S),
            )
        try:
            outcome = RemSvcHook(grpc_conn_id=self.grpc_conn_id).run_commands(
                commands,
                stream_timeout=float(self.stream_timeout),
                metadata=metadata,
                hooks=self._pipeline.result_hooks(),
            )
        except Exception as exc:
            # The engine raises only before sending (bad settings, unknown connection).
            self._fail_before_sending(context, type(exc).__name__, str(exc))
        return self._report(context, outcome)

    def execute_complete(self, context: Any, event: Mapping[str, Any] | None = None) -> Any:
        """Resume on the worker with the trigger's event and report the outcome."""
        if not event or event.get("status") != EVENT_COMPLETE or "outcome" not in event:
            self._fail_before_sending(
                context,
                (event or {}).get("error_type") or "error",
                (event or {}).get("message") or "the trigger ended without an event",
            )
        return self._report(context, StreamOutcome.from_json(event["outcome"]))

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
        try:
            return validate_commands(
                self.commands, default_src=default_src(context), on_unknown_keys=self.log.warning
            )
        except RemSvcError as exc:
            raise AirflowFailException(f"RemSvc task {self.task_id!r}: {exc}") from exc

    def _rendered_metadata(self) -> tuple[tuple[str, str], ...]:
        try:
            return check_metadata(self.metadata)
        except RemSvcError as exc:
            raise AirflowFailException(f"RemSvc task {self.task_id!r}: {exc}") from exc


_NOT_GIVEN: Any = object()


def _ignore(message: str) -> None:
    pass


def check_static_arguments(
    *,
    task_id: str,
    commands: Any = _NOT_GIVEN,
    stream_timeout: Any = 3600.0,
    metadata: Any = None,
    result_handler: Any = None,
) -> ResultPipeline:
    """Check what can be checked before templating; return the resolved pipeline.

    Values that contain Jinja (or are not plain data, like an XComArg) are checked
    after templating, in ``execute``.
    """
    try:
        check_stream_timeout(stream_timeout)
        if commands is not _NOT_GIVEN and is_static(commands):
            # Unknown keys are reported when the task runs, in its log; not on every parse.
            validate_commands(commands, on_unknown_keys=_ignore)
        if is_static(metadata):
            check_metadata(metadata)
        else:
            check_static_metadata_keys(metadata)
        return resolve_handler(result_handler)
    except RemSvcError as exc:
        raise AirflowException(f"RemSvc task {task_id!r}: {exc}") from exc


def check_stream_timeout(stream_timeout: Any) -> None:
    if is_static(stream_timeout):  # mapped or templated: the engine checks the value it gets
        check_timeout(stream_timeout)


_METADATA_WHY = "operator arguments are stored in the metadata database"
_METADATA_FIX = (
    "Put the token in the connection (its Bearer token field, the Password; or the "
    "bearer_token extra)"
)


def check_metadata(metadata: Any) -> tuple[tuple[str, str], ...]:
    """Validate extra call metadata; a credential in it would be stored in plain text."""
    return user_metadata(metadata or (), why=_METADATA_WHY, fix=_METADATA_FIX)


def check_static_metadata_keys(metadata: Any) -> None:
    """Refuse a literal ``authorization`` key even when its value is templated: the
    rendered value would be a token stored with the rendered fields."""
    if not isinstance(metadata, (list, tuple)):
        return
    for item in metadata:
        if isinstance(item, (list, tuple)) and len(item) == 2 and is_static(item[0]):
            user_metadata([(item[0], "")], why=_METADATA_WHY, fix=_METADATA_FIX)


def _blanked(metadata: Any) -> Any:
    """``metadata`` with every value replaced, so a refused token is not kept."""
    if isinstance(metadata, (list, tuple)):
        return [
            [item[0], "***"] if isinstance(item, (list, tuple)) and len(item) == 2 else "***"
            for item in metadata
        ]
    return "***"


def is_static(value: Any) -> bool:
    """Plain data with no Jinja anywhere: safe to check before templating."""
    if value is None or isinstance(value, (bool, int, float)):
        return True
    if isinstance(value, str):
        return not any(marker in value for marker in _JINJA_MARKERS)
    if isinstance(value, Mapping):
        return all(is_static(k) and is_static(v) for k, v in value.items())
    if isinstance(value, (list, tuple)):
        return all(is_static(item) for item in value)
    return False  # an XComArg, a template object, anything resolved at run time


def default_deferrable() -> bool:
    """``[operators] default_deferrable``, read when the operator is built (not when this
    module is imported), so a changed setting applies to the next parse."""
    return bool(conf.getboolean("operators", "default_deferrable", fallback=False))


def default_src(context: Any) -> str:
    """Identify the task instance in server logs, so retries can be told apart."""
    ti = context["ti"]
    map_index = getattr(ti, "map_index", -1)
    mapped = f"[{map_index}]" if map_index is not None and map_index >= 0 else ""
    return f"airflow:{ti.dag_id}.{ti.task_id}{mapped}:{ti.run_id}:try{ti.try_number}"


def _spec_for_trigger(pipeline: ResultPipeline) -> Any:
    """The JSON spec, only when the triggerer has fail-fast checks to run from it."""
    if not pipeline.result_hooks():
        return None
    if any(step.info is None for step in pipeline.steps):
        return None  # a Python callable cannot be sent to the triggerer
    return pipeline.spec


__all__ = ["RemSvcOperator"]
