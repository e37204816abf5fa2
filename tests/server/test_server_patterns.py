"""Allow and deny patterns: RE2, never expanded, refused at startup when they cannot be enforced."""

from __future__ import annotations

import pytest

from remsvc_core.errors import ServerConfigError
from remsvc_core.server.config import ServerConfig, parse_config
from remsvc_core.server.patterns import BrokenPattern, check_pattern, compile_pattern
from remsvc_core.server.policy import CommandPolicy


@pytest.mark.parametrize("pattern", ["^${WORD}$", "echo $WORD", "[$]x$WORD"])
def test_a_variable_in_a_pattern_is_refused_not_expanded(pattern):
    with pytest.raises(ServerConfigError) as caught:
        parse_config(f"[denylist]\nword = {pattern}\n", source="v.ini", env={"WORD": "reboot"})
    message = str(caught.value)
    assert message.startswith("v.ini: [denylist] word: ")
    assert "patterns are never expanded from the environment" in message
    assert "reboot" not in message


def test_an_escaped_dollar_reaches_the_engine_as_written():
    # In the file \\$ is the regular expression \$ (a literal dollar), never a variable.
    config = parse_config("[denylist]\nhome = ^cat \\\\$HOME$\n", env={"HOME": "/root"})
    assert config.denylist == [("home", r"^cat \$HOME$")]
    policy = CommandPolicy(config.allowlist, config.denylist)
    assert not policy.check("cat $HOME").allowed
    assert policy.check("cat /root").allowed
    with pytest.raises(ServerConfigError, match=r"the escape \\\$ is read differently"):
        parse_config("[denylist]\nhome = ^cat \\$HOME$\n", source="e.ini")


@pytest.mark.parametrize(
    ("pattern", "construct"),
    [
        (r"(a)\1", "a backreference"),
        (r"(?P<w>a)(?P=w)", "a backreference"),
        (r"^echo (?=x)", "lookaround"),
        (r"^echo (?<!x)", "lookaround"),
        (r"(?>ab)", "an atomic group"),
        (r"a*+", "a possessive quantifier"),
    ],
)
def test_a_valid_pattern_re2_cannot_run_is_an_error_naming_the_construct(pattern, construct):
    with pytest.raises(ValueError, match="uses " + construct) as caught:
        compile_pattern(pattern)
    assert not isinstance(caught.value, BrokenPattern)
    with pytest.raises(ServerConfigError, match=r"code: \[denylist\] d: uses "):
        ServerConfig(source="code").replace(denylist=[("d", pattern)])


def test_a_pattern_no_engine_accepts_is_left_to_deny_all_mode():
    with pytest.raises(BrokenPattern):
        compile_pattern("^df -P (/")
    check_pattern("^df -P (/")  # not a startup error: upstream's deny-all mode
    assert not CommandPolicy([("ok", "^uptime$")], [("x", "^df -P (/")]).check("uptime").allowed


def test_an_empty_pattern_would_match_everything_so_it_is_refused():
    with pytest.raises(ServerConfigError, match=r"\[allowlist\] any: empty pattern"):
        parse_config("[allowlist]\nany =\nup = ^uptime$\n", source="e.ini")


def test_matching_is_re2s_dollar_is_the_very_end():
    policy = CommandPolicy([("up", "^uptime$")], [])
    assert policy.check("uptime").allowed
    assert not policy.check("uptime\n").allowed  # Python's re would let this through
