"""The reference server's configuration: :class:`ServerConfig` and the INI reader.

The INI layout is the upstream server's (``[server]``, ``[tls]``, ``[auth]``,
``[allowlist]``, ``[denylist]``, ``[log]``), so an upstream configuration file starts
this server unchanged. Our additions live in ``[server]`` (``host``, ``max_parallel``,
``output_cap_bytes``, ``allow_insecure_auth``, ``drain_grace_ms``).

Values may use ``$VAR`` or ``${VAR}``; ``$$`` is a literal ``$``, and a ``$`` that is
not followed by a variable name (a regex end anchor, say) is kept as it is. An unset
variable is an error: silently running with an empty token or path is worse.

The fixed keys, their ranges and the fields they set are declared once, in
:data:`remsvc_core.server.config_keys.KEYS`; this module reads the file with it and
checks the rules that span several keys.

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
from remsvc_core.server.config_keys import FREE_FORM_SECTIONS, KEYS, LOG_LEVELS, known_keys

__all__ = ["DEFAULT_OUTPUT_CAP", "ServerConfig", "is_loopback_host", "load_config", "parse_config"]

DEFAULT_OUTPUT_CAP = 262_144

log = logging.getLogger("remsvc.server")

# What each TLS file must hold, and how an error names it.
_TLS_FILES = (
    ("cert", "tls_cert", "CERTIFICATE", "a PEM certificate"),
    ("key", "tls_key", "PRIVATE KEY", "a PEM private key"),
    ("ca", "tls_ca", "CERTIFICATE", "a PEM certificate"),
)


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
    audit_file: str | None = None
    audit_include_command: bool = True
    hidden_env: frozenset[str] = frozenset()
    source: str = field(default="<ServerConfig>", compare=False)

    def __post_init__(self) -> None:
        # Keep the "sorted by label" promise for configs built in code too.
        object.__setattr__(self, "allowlist", sorted((str(k), str(v)) for k, v in self.allowlist))
        object.__setattr__(self, "denylist", sorted((str(k), str(v)) for k, v in self.denylist))
        object.__setattr__(self, "auth", dict(self.auth))

    @property
    def log_level_number(self) -> int:
        return LOG_LEVELS.get(self.log_level.lower(), logging.INFO)

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
        for key in KEYS:
            try:
                key.kind.check(getattr(self, key.field))
            except ValueError as exc:
                raise self._error(key.section, key.name, str(exc)) from None
        self._check_auth()
        self._check_tls()
        if (
            self.auth
            and not self.tls_enabled
            and not is_loopback_host(self.host)
            and not self.allow_insecure_auth
        ):
            raise self._error(
                "server",
                "host",
                "refusing to accept bearer tokens in plaintext on non-loopback address "
                f"{self.host!r}: "
                "enable [tls], listen on 127.0.0.1, or set allow_insecure_auth = true",
            )

    def _error(self, section: str, key: str, problem: str) -> ServerConfigError:
        return ServerConfigError(f"{self.source}: [{section}] {key}: {problem}")

    def _check_auth(self) -> None:
        owner_of: dict[str, str] = {}
        for identity, token in self.auth.items():
            if not identity:
                raise self._error("auth", "<empty>", "every token needs an identity name")
            if not isinstance(token, str):
                raise self._error("auth", identity, "the token must be a string")
            if not token:
                raise self._error("auth", identity, "empty token; give each identity a token")
            if token in owner_of:
                # Names the other identity, never the token.
                raise self._error(
                    "auth",
                    identity,
                    f"same token as identity {owner_of[token]!r}; "
                    "every identity needs its own token",
                )
            owner_of[token] = identity

    def _check_tls(self) -> None:
        if not self.tls_enabled:
            if self.tls_ca:
                raise self._error("tls", "ca", "a client CA (mutual TLS) needs enabled = true")
            return
        for key, field_name, pem_kind, what in _TLS_FILES:
            path = getattr(self, field_name)
            if not path:
                if key == "ca":  # optional: without it, no client certificates
                    continue
                raise self._error("tls", key, f"TLS is enabled but no {key} file is given")
            if not os.path.isfile(path) or not os.access(path, os.R_OK):
                raise self._error("tls", key, f"{path!r} does not exist or is not readable")
            if not _looks_like_pem(path, pem_kind):
                raise self._error("tls", key, f"{path!r} is not {what}")


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
        if lowered not in FREE_FORM_SECTIONS and known_keys(lowered) is None:
            _unknown_name(f"{source}: unknown section [{name}] ignored")

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
            out[key if section in FREE_FORM_SECTIONS else key.lower()] = (
                key,
                expand_vars(value, environ, where, used),
            )
        known = known_keys(section)
        if known is not None:
            for key in sorted(set(out) - known):
                _unknown_name(f"{source}: [{real}] {out[key][0]}: unknown key ignored")
        return out

    fixed = {section: raw(section) for section in dict.fromkeys(key.section for key in KEYS)}
    for key in KEYS:
        if key.name in fixed[key.section]:
            spelled, text = fixed[key.section][key.name]
            try:
                values[key.field] = key.kind.parse(text)
            except ValueError as exc:
                where = f"{source}: [{sections[key.section]}] {spelled}"
                raise ServerConfigError(f"{where}: {exc}") from None
    if not values.get("tls_enabled"):
        # Upstream ignores cert/key/ca while TLS is off; so do we, but say so.
        for name in ("cert", "key", "ca"):
            if values.pop(f"tls_{name}", None):
                log.warning("%s: [tls] %s is ignored because TLS is not enabled", source, name)

    # Tokens are checked (non-empty, one per identity) by ServerConfig.validate.
    values["auth"] = {identity: token.strip() for identity, (_, token) in raw("auth").items()}
    values["hidden_env"] = frozenset(secret_vars)
    values["allowlist"] = sorted(
        (label, pattern) for label, (_, pattern) in raw("allowlist").items()
    )
    values["denylist"] = sorted((label, pattern) for label, (_, pattern) in raw("denylist").items())

    config = ServerConfig(**values)
    config.validate()
    return config


def _unknown_name(message: str) -> None:
    """An unknown section or key: ignored with a warning, which keeps a file written for
    a newer server usable by an older one. (To make it a startup error instead, raise
    ServerConfigError(message) here.)"""
    log.warning("%s", message)


def _looks_like_pem(path: str, kind: str) -> bool:
    try:
        with open(path, "rb") as handle:
            head = handle.read(1 << 16)
    except OSError:
        return False
    return b"-----BEGIN " in head and kind.encode() in head
