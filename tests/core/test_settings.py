"""Channel settings: metadata rules and a token that never shows itself."""

from __future__ import annotations

import pickle

import pytest

from remsvc_core.errors import SettingsError
from remsvc_core.secret import Secret
from remsvc_core.settings import ChannelSettings


def test_metadata_keys_are_lowercased_and_token_wins() -> None:
    settings = ChannelSettings(
        target="h:1",
        bearer_token=Secret("tok"),
        metadata=(("X-Team", "ops"), ("Authorization", "Bearer other")),
    )
    merged = dict(settings.call_metadata([("X-TEAM", "sre"), ("x-run", "7")]))
    assert merged == {"x-team": "sre", "authorization": "Bearer tok", "x-run": "7"}


def test_plain_string_token_is_wrapped_and_masked() -> None:
    settings = ChannelSettings(target="h:1", bearer_token="hunter2-token")  # type: ignore[arg-type]
    assert isinstance(settings.bearer_token, Secret)
    for text in (repr(settings), str(settings), settings.safe_description()):
        assert "hunter2-token" not in text
    with pytest.raises(TypeError, match="cannot be pickled"):
        pickle.dumps(settings.bearer_token)


@pytest.mark.parametrize(
    ("metadata", "message"),
    [
        ([("k",)], r"metadata\[0\] must be a \(key, value\) pair"),
        ([("", "v")], "key must be a non-empty string"),
        ([("k", 3)], "value for 'k' must be a string"),
    ],
)
def test_bad_metadata(metadata: list, message: str) -> None:
    with pytest.raises(SettingsError, match=message):
        ChannelSettings(target="h:1", metadata=metadata)  # type: ignore[arg-type]


@pytest.mark.parametrize("target", ["", ":50051", "host:"])
def test_bad_targets(target: str) -> None:
    with pytest.raises(SettingsError, match="not host:port"):
        ChannelSettings(target=target)


def test_channel_key_ignores_the_token() -> None:
    a = ChannelSettings(target="h:1", bearer_token=Secret("a"))
    b = ChannelSettings(target="h:1", bearer_token=Secret("b"))
    assert a.channel_key() == b.channel_key()
