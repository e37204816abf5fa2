"""What one ``[identity NAME]`` section says: a caller's own rules, users and limits.

An identity is who the server knows the caller to be: the name of its bearer token
in ``[auth]`` when tokens are configured; otherwise, with mutual TLS, the name in
its client certificate (the subject's common name, or its first subject alternative
name when it has no CN); otherwise ``anonymous``. The section of that name adds to
the server-wide lists, it never replaces them::

    [identity analysts]
    allow.uptime = ^uptime$
    deny.dotdot = [.][.]
    users = nobody postgres
    max_commands = 4
    max_streams = 2

``allow.LABEL`` and ``deny.LABEL`` are patterns like ``[allowlist]``/``[denylist]``
ones; ``users`` names the OS users the identity's commands may run as (``cmdusr``;
an empty ``cmdusr`` runs as the server's own user, and is checked as that user's
name); ``*`` or no ``users`` line means any user. ``max_commands`` and
``max_streams`` override ``[limits] identity_max_commands``/``identity_max_streams``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from remsvc_core.server.config_keys import IDENTITY_KEYS
from remsvc_core.server.patterns import check_pattern, compile_pattern

__all__ = ["ANONYMOUS", "IdentityLimits", "IdentityPolicy"]

ANONYMOUS = "anonymous"


@dataclass(frozen=True)
class IdentityLimits:
    """The limits that apply to one identity's calls (enforced by the service)."""

    max_commands: int  # commands of this identity running at once
    max_streams: int  # streams of this identity open at once


@dataclass(frozen=True)
class IdentityPolicy:
    """One identity's section. Rules are ``(label, pattern)`` pairs sorted by label;
    ``users`` None means any user; a limit of None falls back to ``[limits]``."""

    allowlist: list[tuple[str, str]] = field(default_factory=list)
    denylist: list[tuple[str, str]] = field(default_factory=list)
    users: frozenset[str] | None = None
    max_commands: int | None = None
    max_streams: int | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "allowlist", sorted((str(k), str(v)) for k, v in self.allowlist))
        object.__setattr__(self, "denylist", sorted((str(k), str(v)) for k, v in self.denylist))
        if self.users is not None:
            object.__setattr__(self, "users", frozenset(self.users))

    def problems(self) -> list[tuple[str, str]]:
        """``(key, problem)`` for every value the server cannot run with."""
        found = []
        for key in IDENTITY_KEYS:
            value = getattr(self, key.field)
            if value is None:
                continue
            try:
                key.kind.check(value)
            except ValueError as exc:
                found.append((key.name, str(exc)))
        for prefix, rules in (("allow.", self.allowlist), ("deny.", self.denylist)):
            for label, pattern in rules:
                if not label:
                    found.append((prefix, "every rule needs a label (allow.LABEL = pattern)"))
                    continue
                try:
                    check_pattern(pattern)
                    # No upstream file to stay compatible with here: a pattern that
                    # does not compile is an error, not deny-all mode.
                    compile_pattern(pattern)
                except ValueError as exc:
                    found.append((f"{prefix}{label}", str(exc)))
        return found
