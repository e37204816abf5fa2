"""The reference server's configuration: :class:`ServerConfig` and the INI reader.

The INI layout is the upstream server's (``[server]``, ``[tls]``, ``[auth]``,
``[allowlist]``, ``[denylist]``, ``[log]``), so an upstream configuration file starts
this server unchanged. Our additions live in ``[server]`` (``host``, ``max_parallel``,
``output_cap_bytes``, ``allow_insecure_auth``, ``drain_grace_ms``).

Values may use ``$VAR`` or ``${VAR}``; ``$$`` is a literal ``$``, and a ``$`` that is
not followed by a variable name (a regex end anchor, say) is kept as it is. An unset
variable is an error: silently running with an empty token or path is worse.

Every invalid value raises :class:`~remsvc_core.errors.ServerConfigError` naming the
file, the section and the key, and saying what a valid value looks like.
"""

from __future__ import annotations

import configparser
import dataclasses
import ipaddress
import logging
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from remsvc_core.errors import ServerConfigError

__all__ = ["DEFAULT_OUTPUT_CAP", "ServerConfig", "is_loopback_host", "load_config", "parse_config"]

DEFAULT_OUTPUT_CAP = 262_144
_MAX_OUTPUT_CAP = 1 << 30
_MAX_PARALLEL = 1024

log = logging.getLogger("remsvc.server")

# Upstream (spdlog-style) level names next to Python's, so its [log] level works here.
_LOG_LEVELS = {
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

_KNOWN_KEYS: dict[str, frozenset[str]] = {
    "server": frozenset(
        {
            "host",
            "port",
            "cmd_timeout_ms",
            "max_parallel",
            "output_cap_bytes",
            "allow_insecure_auth",
            "drain_grace_ms",
        }
    ),
    "tls": frozenset({"enabled", "cert", "key", "ca"}),
    "log": frozenset({"file", "level"}),
}
_FREE_FORM_SECTIONS = frozenset({"auth", "allowlist", "denylist"})


@dataclass(frozen=True)
class ServerConfig:
    """Everything the reference server needs; defaults are the safe ones.

    ``auth`` maps identity -> bearer token and is hidden from ``repr``.
    ``allowlist``/``denylist`` are ``(label, pattern)`` pairs sorted by label; patterns
    are compiled when the server starts (a bad one puts the server in deny-all mode).
    ``hidden_env`` names environment variables the commands must not inherit (those
    that held ``[auth]`` tokens). ``source`` is the INI file the values came from, used
    in error messages.
    """

    host: str = "127.0.0.1"
    port: int = 50051
    cmd_timeout_ms: int = 30_000
    max_parallel: int = 1
    output_cap_bytes: int = DEFAULT_OUTPUT_CAP
    tls_enabled: bool = False
    tls_cert: str | None = None
    tls_key: str | None = None
    tls_ca: str | None = None
    auth: Mapping[str, str] = field(default_factory=dict, repr=False)
    allowlist: list[tuple[str, str]] = field(default_factory=list)
    denylist: list[tuple[str, str]] = field(default_factory=list)
    log_file: str | None = None
    log_level: str = "INFO"
    allow_insecure_auth: bool = False
    drain_grace_s: float = 5.0
    hidden_env: frozenset[str] = frozenset()
    source: str = field(default="<ServerConfig>", compare=False)

    def __post_init__(self) -> None:
        # Keep the "sorted by label" promise for configs built in code too.
        object.__setattr__(self, "allowlist", sorted((str(k), str(v)) for k, v in self.allowlist))
        object.__setattr__(self, "denylist", sorted((str(k), str(v)) for k, v in self.denylist))
        object.__setattr__(self, "auth", dict(self.auth))

    @property
    def log_level_number(self) -> int:
        return _LOG_LEVELS.get(self.log_level.lower(), logging.INFO)

    @property
    def identities(self) -> list[str]:
        """The configured identities (never the tokens)."""
        return sorted(self.auth)

    def replace(self, **changes: Any) -> ServerConfig:
        """A copy with ``changes`` applied and checked (unknown names are an error)."""
        names = {f.name for f in dataclasses.fields(self)}
        unknown = sorted(set(changes) - names)
        if unknown:
            raise ServerConfigError(
                f"unknown ServerConfig field(s) {', '.join(unknown)}; "
                f"valid fields: {', '.join(sorted(names - {'source'}))}"
            )
        new = dataclasses.replace(self, **changes)
        new.validate()
        return new

    def validate(self) -> None:
        """Raise :class:`ServerConfigError` for a value the server cannot run with.

        Checks the same rules as :func:`load_config`, for configs built in code.
        """
        where = self.source

        def bad(section: str, key: str, problem: str) -> ServerConfigError:
            return ServerConfigError(f"{where}: [{section}] {key}: {problem}")

        if not isinstance(self.host, str) or not self.host.strip():
            raise bad("server", "host", "must be a host name or address, e.g. 127.0.0.1")
        _check_int_range(
            self.port, 0, 65535, bad("server", "port", "must be 0..65535 (0 = ephemeral)")
        )
        _check_int_range(
            self.cmd_timeout_ms, 1, None, bad("server", "cmd_timeout_ms", "must be > 0")
        )
        _check_int_range(
            self.max_parallel,
            1,
            _MAX_PARALLEL,
            bad("server", "max_parallel", f"must be 1..{_MAX_PARALLEL}"),
        )
        _check_int_range(
            self.output_cap_bytes,
            1,
            _MAX_OUTPUT_CAP,
            bad("server", "output_cap_bytes", f"must be 1..{_MAX_OUTPUT_CAP}"),
        )
        if not isinstance(self.drain_grace_s, (int, float)) or self.drain_grace_s < 0:
            raise bad("server", "drain_grace_ms", "must be >= 0")
        if self.log_level.lower() not in _LOG_LEVELS:
            raise bad(
                "log",
                "level",
                f"unknown level {self.log_level!r}; use one of {', '.join(_LOG_LEVELS)}",
            )
        for identity, token in self.auth.items():
            if not identity or not isinstance(token, str) or not token:
                raise bad("auth", identity or "<empty>", "each identity needs a non-empty token")
        tokens = list(self.auth.values())
        if len(set(tokens)) != len(tokens):
            raise bad(
                "auth",
                ", ".join(_identities_sharing_a_token(self.auth)),
                "two identities share one token",
            )
        if self.tls_enabled:
            for key, path in (("cert", self.tls_cert), ("key", self.tls_key)):
                if not path:
                    raise bad("tls", key, "TLS is enabled but no file is given")
                _check_readable_file(
                    path, bad("tls", key, f"{path!r} does not exist or is not readable")
                )
            if self.tls_ca:
                _check_readable_file(
                    self.tls_ca,
                    bad("tls", "ca", f"{self.tls_ca!r} does not exist or is not readable"),
                )
        elif self.tls_ca:
            raise bad("tls", "ca", "a client CA (mutual TLS) needs enabled = true")
        if (
            self.auth
            and not self.tls_enabled
            and not is_loopback_host(self.host)
            and not self.allow_insecure_auth
        ):
            raise bad(
                "server",
                "host",
                "refusing to accept bearer tokens in plaintext on non-loopback address "
                f"{self.host!r}: "
                "enable [tls], listen on 127.0.0.1, or set allow_insecure_auth = true",
            )


def _identities_sharing_a_token(auth: Mapping[str, str]) -> list[str]:
    seen: dict[str, list[str]] = {}
    for identity, token in auth.items():
        seen.setdefault(token, []).append(identity)
    return sorted(i for group in seen.values() if len(group) > 1 for i in group)


def _check_int_range(value: object, low: int, high: int | None, error: ServerConfigError) -> None:
    if (
        isinstance(value, bool)
        or not isinstance(value, int)
        or value < low
        or (high is not None and value > high)
    ):
        raise error


def _check_readable_file(path: str, error: ServerConfigError) -> None:
    if not os.path.isfile(path) or not os.access(path, os.R_OK):
        raise error


def is_loopback_host(host: str) -> bool:
    """True for addresses only this machine can reach (127.0.0.0/8, ::1, localhost)."""
    name = host.strip().strip("[]")
    if name.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


_VAR = re.compile(r"\$(?:\$|\{(?P<braced>[^}]*)\}|(?P<plain>[A-Za-z_][A-Za-z0-9_]*))")


def expand_vars(
    value: str, env: Mapping[str, str], where: str, used: set[str] | None = None
) -> str:
    """Expand ``$VAR``/``${VAR}``; ``$$`` is ``$``; an unset variable is an error.

    The names of expanded variables are added to ``used`` when it is given.
    """

    def substitute(match: re.Match[str]) -> str:
        if match.group(0) == "$$":
            return "$"
        name = match.group("braced") if match.group("braced") is not None else match.group("plain")
        if not name or not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name):
            raise ServerConfigError(
                f"{where}: ${{{name}}} is not a valid environment variable name"
            )
        if name not in env:
            raise ServerConfigError(
                f"{where}: environment variable {name} is not set (write $$ for a literal $)"
            )
        if used is not None:
            used.add(name)
        return env[name]

    return _VAR.sub(substitute, value)


def load_config(path: str | os.PathLike[str], env: Mapping[str, str] | None = None) -> ServerConfig:
    """Read an upstream-style INI file into a checked :class:`ServerConfig`."""
    source = os.fspath(path)
    try:
        with open(source, encoding="utf-8") as handle:
            text = handle.read()
    except FileNotFoundError:
        raise ServerConfigError(f"{source}: configuration file not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ServerConfigError(f"{source}: cannot read configuration file: {exc}") from None
    return parse_config(text, source=source, env=env)


def parse_config(
    text: str, *, source: str = "<string>", env: Mapping[str, str] | None = None
) -> ServerConfig:
    """Parse INI text (see :func:`load_config`); ``source`` names it in errors."""
    environ = os.environ if env is None else env
    parser = configparser.ConfigParser(interpolation=None, strict=True, delimiters=("=",))
    # Identities and labels are case-sensitive; the fixed keys are matched below.
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    try:
        parser.read_string(text, source=source)
    except configparser.DuplicateOptionError as exc:
        raise ServerConfigError(
            f"{source}: [{exc.section}] {exc.option}: given twice (line {exc.lineno})"
        ) from None
    except configparser.DuplicateSectionError as exc:
        raise ServerConfigError(
            f"{source}: [{exc.section}]: section given twice (line {exc.lineno})"
        ) from None
    except configparser.MissingSectionHeaderError as exc:
        raise ServerConfigError(
            f"{source}: line {exc.lineno}: a key before any [section] header; start with [server]"
        ) from None
    except configparser.Error as exc:
        raise ServerConfigError(f"{source}: not valid INI: {exc.message}") from None

    values: dict[str, Any] = {"source": source}
    sections = {name.lower(): name for name in parser.sections()}
    for lowered, name in sections.items():
        if lowered not in _KNOWN_KEYS and lowered not in _FREE_FORM_SECTIONS:
            log.warning("%s: unknown section [%s] ignored", source, name)

    # Variables that carry tokens are kept out of the commands' environment.
    secret_vars: set[str] = set()

    def raw(section: str) -> dict[str, tuple[str, str]]:
        """key -> (spelling in the file, expanded value) for one section."""
        real = sections.get(section)
        if real is None:
            return {}
        out: dict[str, tuple[str, str]] = {}
        for key, value in parser.items(real, raw=True):
            where = f"{source}: [{real}] {key}"
            used = secret_vars if section == "auth" else None
            out[key if section in _FREE_FORM_SECTIONS else key.lower()] = (
                key,
                expand_vars(value, environ, where, used),
            )
        known = _KNOWN_KEYS.get(section)
        if known is not None:
            for key in sorted(set(out) - known):
                log.warning("%s: [%s] %s: unknown key ignored", source, real, out[key][0])
        return out

    def where(section: str, key: str) -> str:
        return f"{source}: [{sections.get(section, section)}] {key}"

    def integer(
        section: str, items: dict[str, tuple[str, str]], key: str, low: int, high: int | None
    ) -> int | None:
        if key not in items:
            return None
        spelled, value = items[key]
        try:
            number = int(value.strip(), 10)
        except ValueError:
            number = None
        if number is None or number < low or (high is not None and number > high):
            limit = f"from {low} to {high}" if high is not None else f">= {low}"
            raise ServerConfigError(
                f"{where(section, spelled)}: {value!r} is not a whole number {limit}"
            )
        return number

    def boolean(section: str, items: dict[str, tuple[str, str]], key: str) -> bool | None:
        if key not in items:
            return None
        spelled, value = items[key]
        lowered = value.strip().lower()
        if lowered in ("1", "yes", "true", "on"):
            return True
        if lowered in ("0", "no", "false", "off"):
            return False
        raise ServerConfigError(
            f"{where(section, spelled)}: {value!r} is not a boolean; use true or false"
        )

    server = raw("server")
    if "host" in server:
        host = server["host"][1].strip()
        if not host:
            raise ServerConfigError(
                f"{where('server', server['host'][0])}: empty; use an address such as 127.0.0.1"
            )
        values["host"] = host
    for key, low, high in (
        ("port", 0, 65535),
        ("cmd_timeout_ms", 1, None),
        ("max_parallel", 1, _MAX_PARALLEL),
        ("output_cap_bytes", 1, _MAX_OUTPUT_CAP),
    ):
        number = integer("server", server, key, low, high)
        if number is not None:
            values[key] = number
    grace = integer("server", server, "drain_grace_ms", 0, None)
    if grace is not None:
        values["drain_grace_s"] = grace / 1000.0
    insecure = boolean("server", server, "allow_insecure_auth")
    if insecure is not None:
        values["allow_insecure_auth"] = insecure

    tls = raw("tls")
    enabled = boolean("tls", tls, "enabled")
    values["tls_enabled"] = bool(enabled)
    for key in ("cert", "key", "ca"):
        if key in tls:
            spelled, value = tls[key]
            path = value.strip()
            if path and enabled:
                if not os.path.isfile(path) or not os.access(path, os.R_OK):
                    raise ServerConfigError(
                        f"{where('tls', spelled)}: {path!r} does not exist or is not readable"
                    )
                if key in ("cert", "ca") and not _looks_like_pem(path, "CERTIFICATE"):
                    raise ServerConfigError(
                        f"{where('tls', spelled)}: {path!r} is not a PEM certificate"
                    )
                if key == "key" and not _looks_like_pem(path, "PRIVATE KEY"):
                    raise ServerConfigError(
                        f"{where('tls', spelled)}: {path!r} is not a PEM private key"
                    )
            values[f"tls_{key}"] = path or None
    if enabled:
        for key in ("cert", "key"):
            if not values.get(f"tls_{key}"):
                raise ServerConfigError(
                    f"{where('tls', key)}: TLS is enabled but no {key} file is given"
                )
    else:
        # Upstream ignores cert/key/ca while TLS is off; so do we, but say so.
        for key in ("tls_cert", "tls_key", "tls_ca"):
            if values.pop(key, None):
                log.warning("%s: [tls] %s is ignored because TLS is not enabled", source, key[4:])

    auth: dict[str, str] = {}
    owner_of: dict[str, str] = {}
    for identity, (spelled, token) in raw("auth").items():
        token = token.strip()
        if not token:
            raise ServerConfigError(
                f"{where('auth', spelled)}: empty token; give each identity a token"
            )
        if token in owner_of:
            raise ServerConfigError(
                f"{where('auth', spelled)}: same token as identity {owner_of[token]!r}; "
                "every identity needs its own token"
            )
        owner_of[token] = identity
        auth[identity] = token
    values["auth"] = auth
    values["hidden_env"] = frozenset(secret_vars)
    values["allowlist"] = sorted(
        (label, pattern) for label, (_, pattern) in raw("allowlist").items()
    )
    values["denylist"] = sorted((label, pattern) for label, (_, pattern) in raw("denylist").items())

    log_section = raw("log")
    if "file" in log_section and log_section["file"][1].strip():
        values["log_file"] = log_section["file"][1].strip()
    if "level" in log_section:
        spelled, level = log_section["level"]
        if level.strip().lower() not in _LOG_LEVELS:
            raise ServerConfigError(
                f"{where('log', spelled)}: unknown level {level!r}; "
                f"use one of {', '.join(_LOG_LEVELS)}"
            )
        values["log_level"] = level.strip().upper()

    config = ServerConfig(**values)
    config.validate()
    return config


def _looks_like_pem(path: str, kind: str) -> bool:
    try:
        with open(path, "rb") as handle:
            head = handle.read(1 << 16)
    except OSError:
        return False
    return b"-----BEGIN " in head and kind.encode() in head
