"""Negotiation of protocol extensions: what a client asks, what a server reads, grants."""

from __future__ import annotations

import pytest

from remsvc_core import extensions as ext
from remsvc_core.errors import SettingsError


def test_a_client_that_wants_nothing_asks_nothing() -> None:
    assert ext.request_metadata(batch_key=None, output=False, heartbeat_s=None, usage=False) == []


def test_what_a_client_asks_is_what_a_server_reads() -> None:
    metadata = ext.request_metadata(batch_key="k:1", output=True, heartbeat_s=15, usage=True)
    request = ext.asked_for(metadata)
    assert request.extensions == {ext.BATCH, ext.OUTPUT, ext.HEARTBEAT, ext.USAGE}
    assert request.batch_key == "k:1"
    assert request.heartbeat_ms == 15_000


def test_a_server_grants_a_subset_and_the_client_reads_only_known_tokens() -> None:
    granted = ext.grant_metadata({ext.USAGE, ext.OUTPUT})
    assert ext.granted_by(granted) == {ext.USAGE, ext.OUTPUT}
    assert ext.granted_by([("remsvc-extensions", "usage/1, teleport/9")]) == {ext.USAGE}
    assert ext.granted_by([]) == frozenset()  # the upstream server: nothing granted
    assert ext.granted_by(None) == frozenset()


@pytest.mark.parametrize(
    "metadata",
    [
        [("remsvc-extensions", "batch/1")],  # no key
        [("remsvc-extensions", "batch/1"), ("remsvc-batch-key", "spaces are not allowed")],
        [("remsvc-extensions", "heartbeat/1"), ("remsvc-heartbeat-ms", "5")],
        [("remsvc-extensions", "heartbeat/1"), ("remsvc-heartbeat-ms", "soon")],
    ],
)
def test_a_server_does_not_grant_what_it_cannot_honour(metadata: list[tuple[str, str]]) -> None:
    assert ext.asked_for(metadata).extensions == frozenset()


def test_bad_keys_and_intervals_are_refused_on_the_client_with_the_fix() -> None:
    with pytest.raises(SettingsError, match="1 to 200 characters"):
        ext.check_batch_key("has space")
    with pytest.raises(SettingsError, match="heartbeat_s must be from 1 to 300"):
        ext.request_metadata(batch_key=None, output=False, heartbeat_s=0.01, usage=False)
