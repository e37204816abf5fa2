"""Every fixed key of the server's INI file, declared once, in :data:`KEYS`.

A row says where the key lives, what values it takes (its :class:`ValueKind`, which
holds the range or choices), which :class:`~remsvc_core.server.config.ServerConfig`
field it sets, a one-line description (``--help``), whether the upstream server
knows it, and the command-line flag that overrides it, if any. Defaults are the
``ServerConfig`` field defaults. The table drives reading the INI file, checking a
``ServerConfig`` built in code (``validate``), the unknown-key check, the flags of
``remsvc-server``/``remsvc serve``, and a test that keeps the key tables of
``docs/server-operators.md`` in step.

``[auth]``, ``[allowlist]`` and ``[denylist]`` are free-form (``name = value`` lines
of the operator's choosing), so they are not rows here.

A kind's ``parse`` and ``check`` raise :class:`ValueError` with the problem (never
the value of a secret); the caller adds the file, section and key.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Protocol

__all__ = [
    "FREE_FORM_SECTIONS",
    "KEYS",
    "LOG_LEVELS",
    "Boolean",
    "Choice",
    "ConfigKey",
    "Integer",
    "Milliseconds",
    "OptionalPath",
    "Text",
    "ValueKind",
    "key_for_field",
    "known_keys",
]

FREE_FORM_SECTIONS = frozenset({"auth", "allowlist", "denylist"})

# Upstream (spdlog-style) level names next to Python's, so its [log] level works here.
LOG_LEVELS: Mapping[str, int] = {
    "trace": logging.DEBUG,
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warn": logging.WARNING,
    "warning": logging.WARNING,
    "err": logging.ERROR,
    "error": logging.ERROR,
    "critical": logging.CRITICAL,
    "fatal": logging.CRITICAL,
    "off": logging.CRITICAL + 10,
}


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
    """Whole milliseconds in the file (at least ``low``); seconds (a float) in the field."""

    low: int = 0

    def parse(self, text: str) -> float:
        return Integer(self.low).parse(text) / 1000.0

    def check(self, value: object) -> None:
        if (
            isinstance(value, bool)
            or not isinstance(value, (int, float))
            or not value * 1000 >= self.low  # also refuses NaN
        ):
            raise ValueError(f"{value!r} is not a number of seconds >= {self.low / 1000:g}")

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
class ConfigKey:
    """One fixed key: ``[section] name`` sets ``ServerConfig.<field>``."""

    section: str
    name: str
    field: str
    kind: ValueKind
    description: str  # one line, for --help
    upstream: bool  # the upstream C++ server knows this key
    flag: str | None = None  # the remsvc-server / remsvc serve flag that overrides it


KEYS: tuple[ConfigKey, ...] = (
    ConfigKey(
        "server", "host", "host",
        Text("use a host name or address such as 127.0.0.1"),
        "address to listen on: one address, 0.0.0.0 or :: for every interface",
        upstream=False, flag="--host",
    ),
    ConfigKey(
        "server", "port", "port", Integer(0, 65535),
        "TCP port to listen on; 0 picks a free one (see --port-file)",
        upstream=True, flag="--port",
    ),
    ConfigKey(
        "server", "cmd_timeout_ms", "cmd_timeout_ms", Integer(1),
        "how long one command may run, in milliseconds, before it is killed",
        upstream=True, flag="--cmd-timeout-ms",
    ),
    ConfigKey(
        "server", "max_parallel", "max_parallel", Integer(1, 1024),
        "how many commands of one stream run at the same time",
        upstream=False,
    ),
    ConfigKey(
        "server", "output_cap_bytes", "output_cap_bytes", Integer(1, 1 << 30),
        "the most bytes kept of each command's stdout and of its stderr",
        upstream=False,
    ),
    ConfigKey(
        "server", "allow_insecure_auth", "allow_insecure_auth", Boolean(),
        "accept bearer tokens without TLS on a non-loopback host",
        upstream=False,
    ),
    ConfigKey(
        "server", "drain_grace_ms", "drain_grace_s", Milliseconds(0),
        "on SIGTERM or SIGINT, how long running commands may go on, in milliseconds",
        upstream=False,
    ),
    ConfigKey(
        "tls", "enabled", "tls_enabled", Boolean(),
        "serve TLS",
        upstream=True,
    ),
    ConfigKey(
        "tls", "cert", "tls_cert", OptionalPath(),
        "the server's certificate (PEM)",
        upstream=True,
    ),
    ConfigKey(
        "tls", "key", "tls_key", OptionalPath(),
        "the server's private key (PEM, unencrypted)",
        upstream=True,
    ),
    ConfigKey(
        "tls", "ca", "tls_ca", OptionalPath(),
        "CA certificates (PEM) that client certificates must be signed by (mutual TLS)",
        upstream=True,
    ),
    ConfigKey(
        "log", "file", "log_file", OptionalPath(),
        "also append the log to this file (it always goes to stderr)",
        upstream=True, flag="--log-file",
    ),
    ConfigKey(
        "log", "level", "log_level", Choice("level", LOG_LEVELS),
        "the least important lines logged: trace, debug, info, warn, error, critical, off",
        upstream=True, flag="--log-level",
    ),
    ConfigKey(
        "audit", "file", "audit_file", OptionalPath(),
        "append one JSON line per command to this file (the audit log); SIGHUP reopens it",
        upstream=False,
    ),
    ConfigKey(
        "audit", "include_command", "audit_include_command", Boolean(),
        "write each command's text in the audit log (its SHA-256 is always there)",
        upstream=False,
    ),
)  # fmt: skip


def known_keys(section: str) -> frozenset[str] | None:
    """The fixed keys of ``section`` (lower case); None for a free-form or unknown section."""
    names = frozenset(key.name for key in KEYS if key.section == section)
    return names or None


def key_for_field(field: str) -> ConfigKey | None:
    """The key that sets ``ServerConfig.<field>``, if one does."""
    return next((key for key in KEYS if key.field == field), None)
