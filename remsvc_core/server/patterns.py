"""Allow and deny patterns: RE2 regular expressions, checked before the server starts.

Patterns are matched with RE2 (``google-re2``), whose matching time grows linearly
with the command's length whatever the pattern, so no pattern and no command can
stall the server (Python's ``re`` backtracks: ``^echo( ?[A-Za-z0-9]+)*$`` against a
crafted command never finishes). The price is that RE2 has no backreferences and no
lookaround; a pattern that uses them is a valid regular expression that this server
cannot enforce, so it is a startup error naming the construct, never a silent
deny-all. A pattern that no engine accepts (``^df -P (/``) is the upstream server's
case: the server refuses every command (deny-all mode) and says so loudly.

Patterns are never expanded from the environment: they reach RE2 as written. A
``$`` followed by a name (``$HOME``, ``${X}``) can match nothing there (end of text,
then more text), so it is refused rather than left as a rule that never fires.
"""

from __future__ import annotations

import contextlib
import re
from typing import Any

import re2

__all__ = ["BrokenPattern", "check_pattern", "compile_pattern"]

_OPTIONS = re2.Options()
# A broken pattern is reported once, by us, not also on stderr by RE2's own logger.
_OPTIONS.log_errors = False

# What RE2 refuses that Python's re accepts, and what to say about it.
_UNSUPPORTED: tuple[tuple[re.Pattern[str], str], ...] = (
    (re.compile(r"\(\?<?[=!]"), "lookaround ((?=...), (?!...), (?<=...), (?<!...))"),
    (re.compile(r"\\[1-9]|\(\?P=\w+\)"), "a backreference (\\1, (?P=name))"),
    (re.compile(r"\(\?>"), "an atomic group ((?>...))"),
    (re.compile(r"[*+?}]\+"), "a possessive quantifier (*+, ++, ?+)"),
    (re.compile(r"\(\?\("), "a conditional ((?(1)...))"),
)
_NAME_AFTER_DOLLAR = re.compile(r"[A-Za-z_{]")
_VARIABLE = re.compile(r"\$\{?[A-Za-z0-9_]*\}?")


class BrokenPattern(ValueError):
    """A pattern no regular-expression engine accepts (upstream: deny-all mode)."""


def compile_pattern(pattern: str) -> Any:
    """The compiled RE2 pattern; :class:`BrokenPattern` if no engine accepts it,
    :class:`ValueError` (with the construct) if only RE2 does not."""
    try:
        return re2.compile(pattern, _OPTIONS)
    except re2.error as exc:
        reason = _re2_message(exc)
    try:
        re.compile(pattern)
    except re.error as exc:
        raise BrokenPattern(f"does not compile ({exc})") from None
    construct = next(
        (name for finder, name in _UNSUPPORTED if finder.search(pattern)),
        "a construct RE2 does not support",
    )
    raise ValueError(
        f"uses {construct}, which the server's regular-expression engine (RE2, which "
        f"cannot be made to hang) does not support: {reason}; rewrite the pattern "
        "without it"
    )


def check_pattern(pattern: str) -> None:
    """Raise :class:`ValueError` for a pattern the server must not start with.

    A :class:`BrokenPattern` is not raised here: that case starts the server in
    deny-all mode, as upstream does.
    """
    if not pattern:
        raise ValueError(
            "empty pattern: it would match every command (upstream skips it); "
            "write a pattern or remove the line"
        )
    _check_no_variables(pattern)
    with contextlib.suppress(BrokenPattern):  # deny-all mode, decided at startup
        compile_pattern(pattern)


def _check_no_variables(pattern: str) -> None:
    in_class = False
    index = 0
    while index < len(pattern):
        char = pattern[index]
        if char == "\\":
            index += 2
            continue
        if char == "[":
            in_class = True
        elif char == "]":
            in_class = False
        elif (
            char == "$"
            and not in_class
            and _NAME_AFTER_DOLLAR.match(pattern, index + 1) is not None
        ):
            token = _VARIABLE.match(pattern, index)
            raise ValueError(
                f"{token.group(0) if token else '$'!r}: patterns are never expanded from the "
                "environment, and a $ followed by a name matches nothing (end of text, "
                "then more text); write the text itself, and [$] for a literal $"
            )
        index += 1


def _re2_message(exc: Exception) -> str:
    detail = exc.args[0] if exc.args else exc
    return detail.decode("utf-8", "replace") if isinstance(detail, bytes) else str(detail)
