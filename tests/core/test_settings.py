"""Channel settings: metadata rules and a token that never shows itself."""

from __future__ import annotations

import dataclasses
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


def test_channel_key_tells_apart_every_setting_of_a_channel(tmp_path) -> None:  # type: ignore[no-untyped-def]
    pem = tmp_path / "x.pem"
    pem.write_text("exists")
    base = ChannelSettings(target="h:1", use_tls=True)
    variants = {
        "target": "h:2",
        "use_tls": False,
        "ca_cert_path": str(pem),
        "tls_server_name": "other.example.com",
        "max_receive_bytes": 1 << 20,
        "keepalive_s": 30,
    }
    for name, value in variants.items():
        changed = dataclasses.replace(base, **{name: value})
        assert changed.channel_key() != base.channel_key(), name
    mutual = dataclasses.replace(base, client_cert_path=str(pem), client_key_path=str(pem))
    assert mutual.channel_key() != base.channel_key()
    per_call = dataclasses.replace(base, metadata=(("x-team", "ops"),), bearer_token=Secret("t"))
    assert per_call.channel_key() == base.channel_key()


@pytest.mark.parametrize(("value", "seconds"), [(10, 10), ("30", 30), (86400, 86400), (60.0, 60)])
def test_keepalive_in_whole_seconds(value: object, seconds: int) -> None:
    settings = ChannelSettings(target="h:1", keepalive_s=value)  # type: ignore[arg-type]
    assert settings.keepalive_s == seconds
    assert isinstance(settings.keepalive_s, int)


@pytest.mark.parametrize("value", [9, 0, -30, 86401, 10.5, "often", True])
def test_keepalive_out_of_bounds_says_why(value: object) -> None:
    with pytest.raises(SettingsError) as raised:
        ChannelSettings(target="h:1", keepalive_s=value)  # type: ignore[arg-type]
    message = str(raised.value)
    assert "keepalive_s must be a whole number of seconds from 10 to 86400" in message
    assert "abuse" in message  # why there is a floor
