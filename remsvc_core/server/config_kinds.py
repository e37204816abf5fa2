"""The kinds of value a server config key takes: how text becomes a field, what is valid.

Each kind parses a key's text (from the INI file or a command-line flag) into a
field value, checks a field value (for configs built in code), and shows a value
as the file would write it. ``parse`` and ``check`` raise :class:`ValueError` with
the problem, never the value of a secret; the caller adds the file, section and key.
The key table itself is :mod:`remsvc_core.server.config_keys`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Protocol

__all__ = [
    "Boolean",
    "Choice",
    "Integer",
    "Milliseconds",
    "OptionalPath",
    "Text",
    "TokenSet",
    "UpstreamBoolean",
    "UserNames",
    "ValueKind",
]


class ValueKind(Protocol):
    """How one key's text becomes a field value, and which values are valid."""

    def parse(self, text: str) -> object:
        """The field value for ``text`` (an INI value or a flag's argument)."""

    def check(self, value: object) -> None:
        """Raise :class:`ValueError` if ``value`` (a field value) is not valid."""

    def show(self, value: object) -> str:
        """``value`` written as the INI file would write it."""


@dataclass(frozen=True)
class Integer:
    """A whole number from ``low`` to ``high`` (no upper bound when None)."""

    low: int
    high: int | None = None

    @property
    def expected(self) -> str:
        if self.high is None:
            return f"a whole number >= {self.low}"
        return f"a whole number from {self.low} to {self.high}"

    def parse(self, text: str) -> int:
        try:
            number = int(text.strip(), 10)
        except ValueError:
            raise ValueError(f"{text!r} is not {self.expected}") from None
        if not self._in_range(number):
            raise ValueError(f"{text!r} is not {self.expected}")
        return number

    def check(self, value: object) -> None:
        if isinstance(value, bool) or not isinstance(value, int) or not self._in_range(value):
            raise ValueError(f"{value!r} is not {self.expected}")

    def _in_range(self, number: int) -> bool:
        return number >= self.low and (self.high is None or number <= self.high)

    def show(self, value: object) -> str:
        return str(value)


@dataclass(frozen=True)
class Milliseconds:
    """Whole milliseconds in the file, ``low`` to ``high``; seconds (a float) in the field."""

    low: int
    high: int

    def parse(self, text: str) -> float:
        return Integer(self.low, self.high).parse(text) / 1000.0

    def check(self, value: object) -> None:
        if (
            isinstance(value, bool)
            or not isinstance(value, (int, float))
            or not self.low <= value * 1000 <= self.high  # also refuses NaN
        ):
            raise ValueError(
                f"{value!r} is not a number of seconds from {self.low / 1000:g} "
                f"to {self.high / 1000:g}"
            )

    def show(self, value: object) -> str:
        assert isinstance(value, (int, float))
        return str(round(value * 1000))


_TRUE = frozenset({"1", "yes", "true", "on"})
_FALSE = frozenset({"0", "no", "false", "off"})


@dataclass(frozen=True)
class Boolean:
    """``true``/``false``, also ``yes``/``no``, ``on``/``off``, ``1``/``0``."""

    def parse(self, text: str) -> bool:
        lowered = text.strip().lower()
        if lowered in _TRUE:
            return True
        if lowered in _FALSE:
            return False
        raise ValueError(f"{text!r} is not a boolean; use true or false")

    def check(self, value: object) -> None:
        if not isinstance(value, bool):
            raise ValueError(f"{value!r} is not a boolean; use True or False")

    def show(self, value: object) -> str:
        return "true" if value else "false"


@dataclass(frozen=True)
class UpstreamBoolean(Boolean):
    """A boolean upstream also reads: refuses the words it would read the other way.

    Upstream (Qt's ``QVariant::toBool``) takes only an empty value, ``0`` and
    ``false`` as false, so ``no`` and ``off`` would switch the setting *on* there.
    """

    def parse(self, text: str) -> bool:
        lowered = text.strip().lower()
        if lowered in ("no", "off"):
            raise ValueError(
                f"{text.strip()!r} would mean true to the upstream server (it reads only "
                "false, 0 or an empty value as false); write false"
            )
        return super().parse(text)


@dataclass(frozen=True)
class UserNames:
    """OS user names separated by blanks, or ``*`` for any user (None in the field)."""

    def parse(self, text: str) -> frozenset[str] | None:
        names = text.split()
        if names == ["*"]:
            return None
        value = frozenset(names)
        self.check(value)
        return value

    def check(self, value: object) -> None:
        if value is None:
            return
        if not isinstance(value, frozenset) or not all(isinstance(n, str) for n in value):
            raise ValueError(f"{value!r} is not a set of user names")
        if not value:
            raise ValueError("no user names; list the users (blank-separated) or write * for any")
        if "*" in value:
            raise ValueError("* means any user and stands alone; drop the other names or the *")
        for name in value:
            if not name or any(ch.isspace() or ch in ",\0" for ch in name):
                raise ValueError(f"{name!r} is not a user name; separate names with blanks")

    def show(self, value: object) -> str:
        return "*" if value is None else " ".join(sorted(value))  # type: ignore[call-overload]


@dataclass(frozen=True)
class Text:
    """Non-empty text, surrounding blanks removed; ``hint`` says what a good value is."""

    hint: str

    def parse(self, text: str) -> str:
        value = text.strip()
        self.check(value)
        return value

    def check(self, value: object) -> None:
        if not isinstance(value, str):
            raise ValueError(f"{value!r} is not text; {self.hint}")
        if not value.strip():
            raise ValueError(f"empty; {self.hint}")

    def show(self, value: object) -> str:
        return str(value)


@dataclass(frozen=True)
class OptionalPath:
    """A file path, or nothing (an empty value)."""

    def parse(self, text: str) -> str | None:
        return text.strip() or None

    def check(self, value: object) -> None:
        if value is not None and (not isinstance(value, str) or not value.strip()):
            raise ValueError(f"{value!r} is not a file path; give a path or leave it unset")

    def show(self, value: object) -> str:
        return "" if value is None else str(value)


@dataclass(frozen=True)
class Choice:
    """One of ``choices`` (any case); the field holds it upper-cased."""

    what: str
    choices: Mapping[str, object]

    def parse(self, text: str) -> str:
        if text.strip().lower() not in self.choices:
            raise ValueError(self._unknown(text))
        return text.strip().upper()

    def check(self, value: object) -> None:
        if not isinstance(value, str) or value.lower() not in self.choices:
            raise ValueError(self._unknown(value))

    def _unknown(self, value: object) -> str:
        return f"unknown {self.what} {value!r}; use one of {', '.join(self.choices)}"

    def show(self, value: object) -> str:
        return str(value).lower()


@dataclass(frozen=True)
class TokenSet:
    """Names from ``known``, separated by commas or blanks, or ``none``; the field holds
    a frozenset."""

    what: str
    known: tuple[str, ...]

    def parse(self, text: str) -> frozenset[str]:
        words = [word for word in text.replace(",", " ").split() if word]
        if words == ["none"]:
            return frozenset()
        value = frozenset(words)
        self.check(value)
        return value

    def check(self, value: object) -> None:
        if not isinstance(value, frozenset) or not value <= set(self.known):
            unknown = (
                sorted(set(value) - set(self.known)) if isinstance(value, frozenset) else value
            )
            raise ValueError(
                f"unknown {self.what} {unknown!r}; use any of {', '.join(self.known)}, or none"
            )

    def show(self, value: object) -> str:
        assert isinstance(value, frozenset)
        return ", ".join(name for name in self.known if name in value) or "none"
