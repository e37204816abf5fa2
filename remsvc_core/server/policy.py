"""Which commands the server agrees to run: the allow and deny lists.

Patterns are regular expressions *searched* in ``cmd`` (not anchored). The deny list
is checked first; a non-empty allow list must then match. A pattern that does not
compile fails closed: the server refuses every command (deny-all mode), the way the
upstream server does, and says so loudly at startup.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass

__all__ = ["CommandPolicy", "Decision"]

log = logging.getLogger("remsvc.server")


@dataclass(frozen=True)
class Decision:
    allowed: bool
    reason: str


_NO_RULE_REFUSES = Decision(True, "no rule refuses it")
_DENY_ALL = Decision(False, "server is in deny-all mode (a configured pattern does not compile)")
_NO_ALLOW_MATCH = Decision(False, "command matches no allowlist rule")


class CommandPolicy:
    """Compiled allow/deny lists. ``check(cmd)`` says whether ``cmd`` may run.

    It runs for every command, so the decisions are made once, up front.
    """

    def __init__(
        self, allowlist: Sequence[tuple[str, str]], denylist: Sequence[tuple[str, str]]
    ) -> None:
        self.broken: list[str] = []
        self._deny = self._compile("denylist", denylist)
        self._allow = self._compile("allowlist", allowlist)
        if self.broken:
            log.error(
                "DENY-ALL MODE: every command will be refused; these patterns do not compile: %s",
                "; ".join(self.broken),
            )

    def _compile(
        self, section: str, entries: Sequence[tuple[str, str]]
    ) -> list[tuple[re.Pattern[str], Decision]]:
        allowed = section == "allowlist"
        verdict = "allowed by allowlist rule" if allowed else "command denied by denylist rule"
        compiled = []
        for label, pattern in entries:
            try:
                compiled.append((re.compile(pattern), Decision(allowed, f"{verdict} {label!r}")))
            except re.error as exc:
                self.broken.append(f"[{section}] {label} = {pattern!r} ({exc})")
        return compiled

    @property
    def deny_all(self) -> bool:
        return bool(self.broken)

    def check(self, cmd: str) -> Decision:
        if self.broken:
            return _DENY_ALL
        for pattern, denied in self._deny:
            if pattern.search(cmd):
                return denied
        if self._allow:
            for pattern, allowed in self._allow:
                if pattern.search(cmd):
                    return allowed
            return _NO_ALLOW_MATCH
        return _NO_RULE_REFUSES
