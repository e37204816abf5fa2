"""The operator's arguments, checked before templating (when the DAG is parsed) and
after it (on the worker): commands, timeout, metadata and the handler spec."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from remsvc_core.commands import Command, validate_commands
from remsvc_core.errors import RemSvcError
from remsvc_core.handlers import ResultPipeline, resolve_handler
from remsvc_core.settings import check_timeout, user_metadata
from remsvc_provider._compat import AirflowException, AirflowFailException

__all__ = [
    "check_log_output_limit",
    "check_metadata",
    "check_static_arguments",
    "check_stream_timeout",
    "default_src",
    "is_static",
    "rendered_commands",
    "rendered_metadata",
    "spec_for_trigger",
]

_JINJA_MARKERS = ("{{", "{%", "{#")


_NOT_GIVEN: Any = object()


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
            validate_commands(commands)
        if is_static(metadata):
            check_metadata(metadata)
        return resolve_handler(result_handler)
    except RemSvcError as exc:
        raise AirflowException(f"RemSvc task {task_id!r}: {exc}") from exc


def check_stream_timeout(stream_timeout: Any) -> None:
    if is_static(stream_timeout):  # mapped or templated: the engine checks the value it gets
        check_timeout(stream_timeout)


def check_metadata(metadata: Any) -> tuple[tuple[str, str], ...]:
    """Validate extra call metadata; a credential in it would be stored in plain text."""
    return user_metadata(
        metadata or (),
        why="operator arguments are stored in the metadata database",
        fix="Put the token in the connection's bearer_token field",
    )


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


def rendered_commands(task_id: str, commands: Any, context: Any) -> list[Command]:
    """The commands after templating, validated; a mistake fails the task unretried."""
    try:
        return validate_commands(commands, default_src=default_src(context))
    except RemSvcError as exc:
        raise AirflowFailException(f"RemSvc task {task_id!r}: {exc}") from exc


def rendered_metadata(task_id: str, metadata: Any) -> tuple[tuple[str, str], ...]:
    """The call metadata after templating, checked; a mistake fails the task unretried."""
    try:
        return check_metadata(metadata)
    except RemSvcError as exc:
        raise AirflowFailException(f"RemSvc task {task_id!r}: {exc}") from exc
