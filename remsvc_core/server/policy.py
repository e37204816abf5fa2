"""Which commands the server agrees to run: the server-wide lists and each identity's own.

Patterns are RE2 regular expressions *searched* in ``cmd`` (not anchored; see
:mod:`remsvc_core.server.patterns`). For a command of identity ``I`` to run as
user ``U`` (``cmdusr``; an empty one is the server's own user), in this order:

1. a server-wide pattern that no engine accepts refuses everything (deny-all mode,
   as upstream; the server says so loudly at startup);
2. ``[identity I] users`` must name ``U`` (when it is given);
3. no ``[denylist]`` pattern and no ``deny.*`` pattern of ``[identity I]`` may match;
4. a non-empty ``[allowlist]`` must match, and so must a non-empty set of
   ``allow.*`` patterns of ``[identity I]``: the identity's lists add to the
   server-wide ones, they never widen them.

Every :class:`Decision` names the rule that made it (``rule``), for the log and the
audit trail; ``reason`` is what the caller is told.
"""

from __future__ import annotations

import logging
import os
import pwd
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from remsvc_core.server.identity_policy import ANONYMOUS, IdentityPolicy
from remsvc_core.server.patterns import compile_pattern

__all__ = ["CommandPolicy", "Decision", "server_user"]

log = logging.getLogger("remsvc.server")


@dataclass(frozen=True)
class Decision:
    """Whether a command may run; ``reason`` says why, ``rule`` names what decided
    (``[denylist] no_rm``, ``[identity ci] users``, ``deny-all``...), None when no
    rule had anything to say."""

    allowed: bool
    reason: str
    rule: str | None = None


_NO_RULE_REFUSES = Decision(True, "no rule refuses it")
_DENY_ALL = Decision(
    False, "server is in deny-all mode (a configured pattern does not compile)", "deny-all"
)


@dataclass(frozen=True)
class _Rule:
    pattern: Any  # a compiled RE2 pattern
    decision: Decision


@dataclass(frozen=True)
class _Lists:
    """One set of deny and allow rules, with what to say when the allow list misses."""

    deny: tuple[_Rule, ...]
    allow: tuple[_Rule, ...]
    no_match: Decision


def server_user() -> str:
    """The name of the user this process runs as: what an empty ``cmdusr`` runs as."""
    try:
        return pwd.getpwuid(os.geteuid()).pw_name
    except KeyError:
        return str(os.geteuid())


class CommandPolicy:
    """The compiled lists. ``check(cmd, identity, user)`` says whether ``cmd`` may run.

    It runs for every command, so patterns are compiled and decisions built once.
    Identity patterns are checked by the configuration (an error there, never
    deny-all); ``identities`` maps an identity to its section.
    """

    def __init__(
        self,
        allowlist: Sequence[tuple[str, str]],
        denylist: Sequence[tuple[str, str]],
        identities: Mapping[str, IdentityPolicy] | None = None,
        *,
        own_user: str | None = None,
    ) -> None:
        self.broken: list[str] = []
        self._server = _Lists(
            deny=self._compile(denylist, "[denylist] {}", "command denied by denylist rule {!r}"),
            allow=self._compile(allowlist, "[allowlist] {}", "allowed by allowlist rule {!r}"),
            no_match=Decision(False, "command matches no allowlist rule", "[allowlist]"),
        )
        self._identities = {
            name: (policy, self._identity_lists(name, policy))
            for name, policy in (identities or {}).items()
        }
        if self.broken:
            log.error(
                "DENY-ALL MODE: every command will be refused; these patterns do not compile: %s",
                "; ".join(self.broken),
            )
        self._own_user = own_user

    @classmethod
    def from_config(cls, config: Any) -> CommandPolicy:
        """The policy a :class:`~remsvc_core.server.config.ServerConfig` describes."""
        return cls(config.allowlist, config.denylist, config.identity_policies)

    @property
    def deny_all(self) -> bool:
        return bool(self.broken)

    @property
    def own_user(self) -> str:
        """The user an empty ``cmdusr`` runs as (this process's)."""
        if self._own_user is None:
            self._own_user = server_user()
        return self._own_user

    def check(self, cmd: str, identity: str = ANONYMOUS, user: str = "") -> Decision:
        if self.broken:
            return _DENY_ALL
        policy, own = self._identities.get(identity, (None, None))
        if policy is not None and policy.users is not None:
            refused = self._check_user(identity, policy.users, user)
            if refused is not None:
                return refused
        lists = (self._server,) if own is None else (self._server, own)
        for current in lists:
            for rule in current.deny:
                if rule.pattern.search(cmd):
                    return rule.decision
        allowed = _NO_RULE_REFUSES
        for current in lists:
            if not current.allow:
                continue
            match = next((rule for rule in current.allow if rule.pattern.search(cmd)), None)
            if match is None:
                return current.no_match
            allowed = match.decision  # the most specific list that allowed it names it
        return allowed

    def _check_user(self, identity: str, users: frozenset[str], user: str) -> Decision | None:
        name = user or self.own_user
        if name in users:
            return None
        as_whom = f"user {name!r}" + (" (cmdusr empty: the server's own user)" if not user else "")
        return Decision(
            False,
            f"identity {identity!r} may not run commands as {as_whom}; "
            f"[identity {identity}] users: {' '.join(sorted(users))}",
            f"[identity {identity}] users",
        )

    def _identity_lists(self, name: str, policy: IdentityPolicy) -> _Lists:
        section = f"[identity {name}]"
        return _Lists(
            deny=self._compile(
                policy.denylist, section + " deny.{}", "command denied by " + section + " deny.{}"
            ),
            allow=self._compile(
                policy.allowlist, section + " allow.{}", "allowed by " + section + " allow.{}"
            ),
            no_match=Decision(
                False, f"command matches no allow rule of {section}", f"{section} allow.*"
            ),
        )

    def _compile(
        self, entries: Sequence[tuple[str, str]], rule: str, reason: str
    ) -> tuple[_Rule, ...]:
        """``rule`` and ``reason`` are formats filled with each entry's label."""
        allowed = reason.startswith("allowed")
        compiled = []
        for label, pattern in entries:
            decision = Decision(allowed, reason.format(label), rule.format(label))
            try:
                compiled.append(_Rule(compile_pattern(pattern), decision))
            except ValueError as exc:
                # BrokenPattern: upstream's deny-all. Any other ValueError (a construct
                # RE2 lacks) cannot reach here through ServerConfig.validate; a policy
                # built around it must still fail closed.
                self.broken.append(f"{rule.format(label)} = {pattern!r} ({exc})")
        return tuple(compiled)
