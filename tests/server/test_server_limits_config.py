"""The [limits] keys and their per-identity overrides: parsed and checked (the service
enforces them)."""

from __future__ import annotations

import pytest

from remsvc_core.errors import ServerConfigError
from remsvc_core.server.config import ServerConfig, parse_config
from remsvc_core.server.identity_policy import IdentityLimits, IdentityPolicy

LIMITS_INI = """\
[auth]
ops = tok-ops
ci = tok-ci
batch = tok-batch

[limits]
max_commands = 40
identity_max_commands = 10
identity_max_streams = 5
idle_stream_timeout_s = 120

[identity ci]
max_commands = 2
max_streams = 1

[identity batch]
max_commands = 100
"""


def test_the_defaults_are_bounded_and_stated():
    config = ServerConfig()
    assert (config.max_commands, config.identity_max_commands) == (512, 256)
    assert (config.identity_max_streams, config.idle_stream_timeout_s) == (2048, 600)
    assert config.limits_for("anyone") == IdentityLimits(max_commands=256, max_streams=2048)


def test_limits_are_read_and_looked_up_per_identity():
    config = parse_config(LIMITS_INI)
    assert (config.max_commands, config.idle_stream_timeout_s) == (40, 120)
    assert config.limits_for("ops") == IdentityLimits(max_commands=10, max_streams=5)
    assert config.limits_for("ci") == IdentityLimits(max_commands=2, max_streams=1)
    # An identity never gets more commands at once than the whole server.
    assert config.limits_for("batch") == IdentityLimits(max_commands=40, max_streams=5)
    assert config.identity_policies["ci"] == IdentityPolicy(max_commands=2, max_streams=1)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("[limits]\nmax_commands = 0\n", "[limits] max_commands: '0' is not a whole number from 1"),
        ("[limits]\nidle_stream_timeout_s = 0\n", "[limits] idle_stream_timeout_s: '0'"),
        ("[limits]\nidle_stream_timeout_s = 1.5\n", "[limits] idle_stream_timeout_s: '1.5'"),
        ("[limits]\nmax_streams = 3\n", "[limits] max_streams: unknown key; did you mean"),
        ("[identity anonymous]\nmax_commands = -1\n", "[identity anonymous] max_commands: '-1'"),
        ("[identity anonymous]\nmax_stream = 1\n", "unknown key; did you mean max_streams?"),
    ],
)
def test_a_bad_limit_is_an_error_naming_section_and_key(text, expected):
    with pytest.raises(ServerConfigError) as caught:
        parse_config(text, source="l.ini")
    assert str(caught.value).startswith("l.ini: ")
    assert expected in str(caught.value)


def test_limits_built_in_code_are_checked_too():
    with pytest.raises(ServerConfigError, match=r"\[limits\] identity_max_streams: 0 is not"):
        ServerConfig(source="code").replace(identity_max_streams=0)
    with pytest.raises(ServerConfigError, match=r"\[identity anonymous\] max_streams: 0 is not"):
        ServerConfig().replace(identity_policies={"anonymous": IdentityPolicy(max_streams=0)})
