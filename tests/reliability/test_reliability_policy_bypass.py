"""Bypass attempts against the allow/deny lists the documentation recommends.

The policies are read from docs/server-operators.md itself (every ``ini policy``
block that the page follows with commands it says are ``allowed``), so a change to
the documented example is tested here the day it is made. Against each, thousands
of generated attempts (shell separators, newlines, ``$()``, backticks, quoting,
backslashes, odd whitespace, look-alike characters, NUL) built around the commands
the page says are allowed must all be refused; a hypothesis search inserts arbitrary
text into allowed commands and requires that whatever still passes carries no shell
syntax at all. A sample is sent to a real server, whose refusal must be
PERMISSION_DENIED, with a canary file proving nothing ran.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from remsvc_core.engine import NO_RETRY, run_commands_sync
from remsvc_core.server.config import parse_config
from remsvc_core.server.embedded import EmbeddedServer
from remsvc_core.server.policy import CommandPolicy

pytestmark = [pytest.mark.reliability, pytest.mark.timeout(180)]

DOC = Path(__file__).resolve().parents[2] / "docs" / "server-operators.md"
FENCE = re.compile(r"^```(\S+)[ \t]+(\S+)[ \t]*\n(.*?)^```", re.M | re.S)

SEPARATORS = [";", " ; ", "&&", "||", "|", "&", "\n", "\r\n", "\r", "\n\n", ";\n", "\t;"]
# Characters a shell gives meaning to, plus whitespace other than a plain space.
SHELL_SYNTAX = set(";&|<>$`()'\"\\*?[]{}!#~=%\n\r\t\x0b\x0c\x00")


@dataclass(frozen=True)
class Documented:
    """A policy the page recommends, with the commands it says that policy allows."""

    where: str
    ini: str
    allowed: tuple[str, ...]

    def policy(self) -> CommandPolicy:
        config = parse_config(self.ini, source=self.where)
        return CommandPolicy(config.allowlist, config.denylist)


def documented_policies() -> list[Documented]:
    text = DOC.read_text(encoding="utf-8")
    found: list[Documented] = []
    pending: tuple[str, str] | None = None
    for match in FENCE.finditer(text):
        language, role, body = match.groups()
        line = text.count("\n", 0, match.start()) + 1
        if (language, role) == ("ini", "policy"):
            pending = (f"{DOC.name}:{line}", body)
        elif language == "json" and pending is not None:
            if role == "allowed":
                found.append(Documented(pending[0], pending[1], tuple(json.loads(body))))
            pending = None
    return found


POLICIES = documented_policies()


def test_the_documentation_recommends_a_policy_to_test():
    assert POLICIES, f"no 'ini policy' block followed by 'json allowed' in {DOC}"
    for documented in POLICIES:
        assert documented.allowed
        policy = documented.policy()
        for command in documented.allowed:
            assert policy.check(command).allowed, (documented.where, command)


def payloads(canary: str) -> list[str]:
    return [f"touch {canary}", "echo PWNED", "rm -rf /srv/data", "sh"]


def variants(command: str, payload: str) -> Iterator[str]:
    """Ways to smuggle ``payload`` in with, or ``command`` past, a policy."""
    for sep in SEPARATORS:
        yield f"{command}{sep}{payload}"
        yield f"{payload}{sep}{command}"
    yield f"{command} $({payload})"
    yield f"{command} `{payload}`"
    yield f"{command} $(echo){payload}"
    yield f"{command}\x00{payload}"
    words = command.split(" ")
    for i, word in enumerate(words):
        for wrapped in (
            f"$({payload}; echo {word})",
            f"`{payload}; echo {word}`",
            f"'{word}'",
            f'"{word}"',
            f"\\{word}",
            f"{word}*",
            f"{word}?",
            f"${{IFS}}{word}",
            f"{word}$'\\x3b'{payload}",
            f"{{{word},{payload}}}",
        ):
            yield " ".join([*words[:i], wrapped, *words[i + 1 :]])
    for space in ("\t", "  ", "\u00a0", "\u2003", "\u3000", "\x0b", "\x0c", "${IFS}"):
        yield command.replace(" ", space) + f";{payload}"
    for lookalike in ("\uff1b", "\u037e", "\u2028", "\u0085"):  # ; ; line/next-line seps
        yield f"{command}{lookalike}{payload}"
    yield f" {command};{payload}"
    yield f"{command} ;{payload}"
    yield f"/usr/bin/env {command}; {payload}"
    # Option injection: an argument the program would read as an option.
    for i in range(1, len(words)):
        for dashes in ("-", "--"):
            yield " ".join([*words[:i], dashes + words[i], *words[i + 1 :]])


def corpus(documented: Documented, canary: str) -> list[str]:
    attempts = {
        variant
        for command in documented.allowed
        for payload in payloads(canary)
        for variant in variants(command, payload)
    }
    return sorted(attempts)


@pytest.mark.parametrize("documented", POLICIES, ids=lambda d: d.where)
def test_generated_bypass_attempts_are_refused(documented, figures, tmp_path):
    policy = documented.policy()
    attempts = corpus(documented, str(tmp_path / "PWNED"))
    passed = [attempt for attempt in attempts if policy.check(attempt).allowed]
    figures.tried("policy bypass attempts", len(attempts))
    assert not passed, f"{documented.where}: {len(passed)} attempt(s) got through: {passed[:10]}"


def harmless(command: str) -> bool:
    """No shell syntax at all (one final newline is harmless: the shell just ends there)."""
    body = command[:-1] if command.endswith("\n") else command
    return not (set(body) & SHELL_SYNTAX) and "  " not in body


@pytest.mark.parametrize("documented", POLICIES, ids=lambda d: d.where)
@settings(
    max_examples=300,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(data=st.data())
def test_whatever_passes_the_policy_carries_no_shell_syntax(documented, figures, data):
    command = data.draw(st.sampled_from(documented.allowed))
    inserted = data.draw(
        st.text(alphabet=st.sampled_from(sorted(SHELL_SYNTAX) + list("ab /-.\u00a0")), max_size=6)
        | st.text(max_size=4)
    )
    position = data.draw(st.integers(0, len(command)))
    attempt = command[:position] + inserted + command[position:]
    figures.tried("policy bypass attempts (hypothesis)")
    if documented.policy().check(attempt).allowed:
        assert harmless(attempt), f"{documented.where}: {attempt!r} passes and carries shell syntax"


@pytest.mark.parametrize("documented", POLICIES, ids=lambda d: d.where)
def test_a_real_server_refuses_a_sample_and_runs_nothing(documented, figures, tmp_path):
    config = parse_config(documented.ini, source=documented.where)
    canary = tmp_path / "PWNED"
    # The client itself refuses a NUL before sending; the policy check covers those.
    attempts = [a for a in corpus(documented, str(canary)) if "\x00" not in a]
    sample = attempts[:: max(1, len(attempts) // 40)]
    with EmbeddedServer(allowlist=config.allowlist, denylist=config.denylist) as server:
        for attempt in sample:
            outcome = run_commands_sync(
                [attempt], server.settings(), stream_timeout=20, retry=NO_RETRY
            )
            assert outcome.status_code == "PERMISSION_DENIED", (attempt, outcome.status_code)
            assert outcome.results == {}
        assert server.commands_run == 0
    figures.tried("policy bypass attempts (real server)", len(sample))
    assert not canary.exists(), "a refused command ran"


def test_the_generator_finds_option_injection_in_a_class_that_admits_a_dash(tmp_path):
    """Positive control: the systemctl rule the page used to recommend let an argument
    start with '-', which systemctl reads as an option."""
    old = Documented(
        "old systemctl rule",
        "[allowlist]\nservice = ^systemctl is-active [a-z0-9@_-]+\\\\.service$\n",
        ("systemctl is-active ssh.service",),
    )
    passed = [a for a in corpus(old, str(tmp_path / "PWNED")) if old.policy().check(a).allowed]
    assert passed == ["systemctl is-active --ssh.service", "systemctl is-active -ssh.service"]


def test_the_generator_finds_the_anchoring_mistake_the_page_warns_about(tmp_path):
    """Positive control: against a weak policy the same corpus does get through."""
    weak = Documented("weak", "[allowlist]\nstatus = ^uptime|df -P /$\n", ("uptime", "df -P /"))
    policy = weak.policy()
    passed = [a for a in corpus(weak, str(tmp_path / "PWNED")) if policy.check(a).allowed]
    assert len(passed) > 20, passed
