"""The operator's arguments, checked before templating (when the DAG is parsed) and
after it (on the worker): commands, timeout, metadata and the handler spec."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from remsvc_core.commands import Command, validate_commands
from remsvc_core.errors import RemSvcError
from remsvc_core.handlers import ResultPipeline, resolve_handler
from remsvc_core.settings import check_timeout, user_metadata
from remsvc_provider._compat import AirflowException, AirflowFailException, conf

__all__ = [
    "blanked",
    "check_log_output_limit",
    "check_metadata",
    "check_static_arguments",
    "check_static_metadata_keys",
    "check_stream_timeout",
    "default_deferrable",
    "default_src",
    "is_static",
    "refuse_rendered_token",
    "rendered_commands",
    "rendered_metadata",
    "spec_for_trigger",
]

_JINJA_MARKERS = ("{{", "{%", "{#")


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


def refuse_rendered_token(task_id: str, owner: Any) -> None:
    """After templating, before Airflow stores the rendered fields: check ``owner``'s
    ``metadata``; a token templated into it is refused and blanked, never kept.

    Airflow keeps every rendered template field (``rendered_task_instance_fields``) as
    soon as rendering ends, so the operators call this from ``render_template_fields``.
    """
    try:
        check_metadata(owner.metadata)
    except RemSvcError as exc:
        owner.metadata = blanked(owner.metadata)
        raise AirflowFailException(f"RemSvc task {task_id!r}: {exc}") from None


def blanked(metadata: Any) -> Any:
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


def spec_for_trigger(pipeline: ResultPipeline) -> Any:
    """The JSON spec, only when the triggerer has fail-fast checks to run from it."""
    if not pipeline.result_hooks():
        return None
    if any(step.info is None for step in pipeline.steps):
        return None  # a Python callable cannot be sent to the triggerer
    return pipeline.spec


def check_log_output_limit(task_id: str, value: Any) -> None:
    """``log_output_limit`` must be None or a whole number of bytes >= 0."""
    if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 0):
        raise AirflowException(
            f"RemSvc task {task_id!r}: log_output_limit must be a whole number of "
            f"bytes >= 0 (0 logs no live output), got {value!r}"
        )


def rendered_commands(
    task_id: str,
    commands: Any,
    context: Any,
    on_unknown_keys: Callable[[str], None] | None = None,
) -> list[Command]:
    """The commands after templating, validated; a mistake fails the task unretried.
    Unknown keys go to ``on_unknown_keys`` (the task log), as 1.0.0 ignored them."""
    try:
        return validate_commands(
            commands, default_src=default_src(context), on_unknown_keys=on_unknown_keys
        )
    except RemSvcError as exc:
        raise AirflowFailException(f"RemSvc task {task_id!r}: {exc}") from exc


def rendered_metadata(task_id: str, metadata: Any) -> tuple[tuple[str, str], ...]:
    """The call metadata after templating, checked; a mistake fails the task unretried."""
    try:
        return check_metadata(metadata)
    except RemSvcError as exc:
        raise AirflowFailException(f"RemSvc task {task_id!r}: {exc}") from exc
