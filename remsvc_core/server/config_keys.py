"""Every fixed key of the server's INI file, declared once: :data:`KEYS` and :data:`IDENTITY_KEYS`.

A row says where the key lives, what values it takes (its :class:`ValueKind`, which
holds the range or choices), which field it sets, a one-line description
(``--help``), whether the upstream server knows it, and the command-line flag that
overrides it, if any. :data:`KEYS` are the keys of ``[server]``, ``[tls]``,
``[limits]`` and ``[log]``; they set :class:`~remsvc_core.server.config.ServerConfig`
fields, whose defaults are theirs. :data:`IDENTITY_KEYS` are the fixed keys of an
``[identity NAME]`` section; they set
:class:`~remsvc_core.server.identity_policy.IdentityPolicy` fields. The tables
drive reading the INI file, checking a ``ServerConfig`` built in code
(``validate``), the unknown-key check (and its "did you mean"), the flags of
``remsvc-server``/``remsvc serve``, and a test that keeps the key tables of
``docs/server-operators.md`` in step.

Free-form parts are not rows: ``[auth]``, ``[allowlist]`` and ``[denylist]`` hold
``name = value`` lines of the operator's choosing, and so do the ``allow.LABEL`` and
``deny.LABEL`` keys of an identity section (:data:`IDENTITY_RULE_PREFIXES`).

Every numeric kind has an upper bound the server can really run with (a test starts
a server with every key at the top of its range).

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
    "IDENTITY_KEYS",
    "IDENTITY_RULE_PREFIXES",
    "IDENTITY_SECTION",
    "KEYS",
    "LOG_LEVELS",
    "Boolean",
    "Choice",
    "ConfigKey",
    "Integer",
    "Milliseconds",
    "OptionalPath",
    "Text",
    "UpstreamBoolean",
    "UserNames",
    "ValueKind",
    "fixed_sections",
    "key_for_field",
    "known_keys",
]

FREE_FORM_SECTIONS = frozenset({"auth", "allowlist", "denylist"})
# ``[identity NAME]``: one caller's policy and limits (see identity_policy.py).
IDENTITY_SECTION = "identity"
# ``allow.LABEL = pattern`` and ``deny.LABEL = pattern`` in an identity section.
IDENTITY_RULE_PREFIXES = ("allow.", "deny.")
# The largest number of milliseconds upstream's 32-bit settings hold (about 24.8 days).
_INT32_MAX = 2_147_483_647

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
class ConfigKey:
    """One fixed key: ``[section] name`` sets ``ServerConfig.<field>``."""

    section: str
    name: str
    field: str
    kind: ValueKind
    description: str  # one line, for --help
    upstream: bool  # the upstream C++ server knows this key
    flag: str | None = None  # the remsvc-server / remsvc serve flag that overrides it
    default_text: str | None = None  # how the docs show a default of None, if not "(none)"
    ignored: str | None = None  # accepted for upstream files, not honoured: the note says why


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
        "server", "cmd_timeout_ms", "cmd_timeout_ms", Integer(1, _INT32_MAX),
        "how long one command may run, in milliseconds, before it is killed",
        upstream=True, flag="--cmd-timeout-ms",
    ),
    ConfigKey(
        "server", "max_parallel", "max_parallel", Integer(1, 1024),
        "how many commands of one stream run at the same time",
        upstream=False,
    ),
    ConfigKey(
        # 256 MiB: a response holds stdout and stderr at the cap, each up to 3 times
        # larger once undecodable bytes become U+FFFD, within gRPC's 2 GiB message limit.
        "server", "output_cap_bytes", "output_cap_bytes", Integer(1, 1 << 28),
        "the most bytes kept of each command's stdout and of its stderr",
        upstream=False,
    ),
    ConfigKey(
        "server", "allow_insecure_auth", "allow_insecure_auth", Boolean(),
        "accept bearer tokens without TLS on a non-loopback host",
        upstream=False,
    ),
    ConfigKey(
        "server", "drain_grace_ms", "drain_grace_s", Milliseconds(0, 86_400_000),
        "on SIGTERM or SIGINT, how long running commands may go on, in milliseconds",
        upstream=False,
    ),
    ConfigKey(
        "tls", "enabled", "tls_enabled", UpstreamBoolean(),
        "serve TLS",
        upstream=True, flag="--tls",
    ),
    ConfigKey(
        "tls", "cert", "tls_cert", OptionalPath(),
        "the server's certificate (PEM)",
        upstream=True, flag="--cert",
    ),
    ConfigKey(
        "tls", "key", "tls_key", OptionalPath(),
        "the server's private key (PEM, unencrypted)",
        upstream=True, flag="--key",
    ),
    ConfigKey(
        "tls", "ca", "tls_ca", OptionalPath(),
        "CA certificates (PEM) that client certificates must be signed by (mutual TLS)",
        upstream=True, flag="--ca-cert",
    ),
    ConfigKey(
        "limits", "max_commands", "max_commands", Integer(1, 100_000),
        "how many commands may run at once on the whole server",
        upstream=False,
    ),
    ConfigKey(
        "limits", "identity_max_commands", "identity_max_commands", Integer(1, 100_000),
        "how many commands one identity may run at once, unless its section says otherwise",
        upstream=False,
    ),
    ConfigKey(
        "limits", "identity_max_streams", "identity_max_streams", Integer(1, 100_000),
        "how many streams one identity may have open, unless its section says otherwise",
        upstream=False,
    ),
    ConfigKey(
        "limits", "idle_stream_timeout_s", "idle_stream_timeout_s", Integer(1, 604_800),
        "seconds a stream may stay open with no command arriving or running",
        upstream=False,
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
        "log", "debug_level", "log_debug_level", Integer(-1, 9),
        "upstream's debug verbosity (-1 to 9); accepted and ignored",
        upstream=True,
        ignored="the reference server has no debug sub-levels; level = debug logs everything",
    ),
)  # fmt: skip

IDENTITY_KEYS: tuple[ConfigKey, ...] = (
    ConfigKey(
        IDENTITY_SECTION, "users", "users", UserNames(),
        "the users (cmdusr) this identity's commands may run as, blank-separated; * for any",
        upstream=False, default_text="any user",
    ),
    ConfigKey(
        IDENTITY_SECTION, "max_commands", "max_commands", Integer(1, 100_000),
        "how many commands this identity may run at once",
        upstream=False, default_text="[limits] identity_max_commands",
    ),
    ConfigKey(
        IDENTITY_SECTION, "max_streams", "max_streams", Integer(1, 100_000),
        "how many streams this identity may have open",
        upstream=False, default_text="[limits] identity_max_streams",
    ),
)  # fmt: skip


def known_keys(section: str) -> frozenset[str] | None:
    """The fixed keys of ``section`` (``identity`` for an identity section); None for a
    free-form or unknown section."""
    table = IDENTITY_KEYS if section == IDENTITY_SECTION else KEYS
    names = frozenset(key.name for key in table if key.section == section)
    return names or None


def key_for_field(field: str) -> ConfigKey | None:
    """The key that sets ``ServerConfig.<field>``, if one does."""
    return next((key for key in KEYS if key.field == field), None)


def fixed_sections() -> tuple[str, ...]:
    """The sections of :data:`KEYS`, in table order."""
    return tuple(dict.fromkeys(key.section for key in KEYS))
