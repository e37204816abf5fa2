"""A trigger event payload that logs as a one-line summary.

Airflow's triggerer logs every event it fires, ``"Trigger fired event"`` with
``result=<the event>``, in the triggerer's log and in the task's log (Airflow 3.1 to
3.3 alike), and a :class:`TriggerEvent` renders as ``TriggerEvent<{payload!r}>``. Our
payload carries every result of the batch, outputs included, and must: the worker
resumes from it and pushes the results to XCom. So the payload stays whole and only
its ``repr`` is short: it names the batch's size and status, never the outputs.
"""

from __future__ import annotations

from typing import Any


class SummarizedPayload(dict[str, Any]):
    """A plain dict to every serializer (it is one), with a one-line ``repr``."""

    def __init__(self, payload: dict[str, Any], summary: str) -> None:
        super().__init__(payload)
        self.summary = summary

    def __repr__(self) -> str:
        return f"{{'status': {self.get('status')!r}, 'outcome': <{self.summary}>}}"

    # A copy (json, pickle, deepcopy) is the whole payload again: a plain dict.
    def __reduce__(self) -> Any:
        return (dict, (dict(self),))


def summarized(payload: dict[str, Any], summary: str) -> SummarizedPayload:
    return SummarizedPayload(payload, summary)
