"""Airflow names whose import path moved between 3.1 and the newest release.

One place to look for them, so the hook, operator and trigger import from here and
never guess. Every fallback is an older home of the same object.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

try:
    from airflow.sdk import BaseHook, BaseOperator
except ImportError:  # pragma: no cover - Airflow 3.0 before the Task SDK exported them
    from airflow.hooks.base import BaseHook  # type: ignore[attr-defined,no-redef]
    from airflow.models.baseoperator import BaseOperator  # type: ignore[attr-defined,no-redef]

try:
    from airflow.sdk.exceptions import AirflowException, AirflowFailException
except ImportError:  # pragma: no cover - Task SDKs before the exceptions moved there
    from airflow.exceptions import (  # type: ignore[attr-defined,no-redef]
        AirflowException,
        AirflowFailException,
    )

from airflow.triggers.base import BaseTrigger, TriggerEvent

try:
    from airflow.sdk.configuration import conf
except ImportError:  # pragma: no cover - Task SDKs before 3.2 read Airflow's own
    from airflow.configuration import conf  # type: ignore[no-redef]

mask_secret: Callable[..., None]
try:
    from airflow.sdk.log import mask_secret
except ImportError:  # pragma: no cover - older Task SDK
    from airflow.sdk.execution_time.secrets_masker import (  # type: ignore[no-redef]
        mask_secret,
    )


def trigger_event(payload: dict[str, Any]) -> TriggerEvent:
    """A :class:`TriggerEvent` (its constructor is untyped in Airflow)."""
    return TriggerEvent(payload)  # type: ignore[no-untyped-call]


async def amask_secret(secret: Any) -> None:
    """Register a secret with the log masker from a coroutine without blocking the loop.

    Newer Task SDKs have an async variant (it talks to the supervisor with ``asend``);
    on older ones the sync variant may talk to the supervisor too, so it runs in a
    worker thread, the way Airflow itself bridged sync connection calls in 3.0/3.1.
    """
    try:
        from airflow.sdk.log import amask_secret as _amask
    except ImportError:  # pragma: no cover - older Task SDK
        from asgiref.sync import sync_to_async

        await sync_to_async(mask_secret)(secret)
        return
    await _amask(secret)


__all__ = [
    "AirflowException",
    "AirflowFailException",
    "BaseHook",
    "BaseOperator",
    "BaseTrigger",
    "TriggerEvent",
    "amask_secret",
    "conf",
    "mask_secret",
    "trigger_event",
]
