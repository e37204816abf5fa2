"""The reference server's configuration: :class:`ServerConfig`, its checks, and the INI reader.

The INI layout is the upstream server's (``[server]``, ``[tls]``, ``[auth]``,
``[allowlist]``, ``[denylist]``, ``[log]``), read in its dialect (see
:mod:`remsvc_core.server.ini_dialect`: where the two servers would read a line
differently, the line is refused). Our additions: keys in ``[server]`` (``host``,
``max_parallel``, ``output_cap_bytes``, ``allow_insecure_auth``,
``drain_grace_ms``), the ``[limits]`` section, and ``[identity NAME]`` sections
(:mod:`remsvc_core.server.identity_policy`). Unknown sections and keys are errors,
with the likely intended name: a misspelt ``[auth]`` must not start a server
without authentication.

Values of ``[server]``, ``[tls]``, ``[limits]``, ``[log]`` and ``[auth]`` may use
``$VAR`` or ``${VAR}``; ``$$`` is a literal ``$``, and a ``$`` that is not followed
by a variable name is kept as it is. An unset variable is an error: silently
running with an empty token or path is worse. Policy (``[allowlist]``,
``[denylist]``, ``[identity NAME]``) is never expanded: a pattern reaches the
regular-expression engine as written.

The fixed keys, their ranges and the fields they set are declared once, in
:mod:`remsvc_core.server.config_keys`; :mod:`remsvc_core.server.config_file` reads
the file with it, and this module checks the rules that span several keys.

Every invalid value raises :class:`~remsvc_core.errors.ServerConfigError` naming the
file, the section and the key (and the line, for what the file's text itself gets
wrong), and saying what a valid value looks like.
"""

from __future__ import annotations

import dataclasses
import difflib
import ipaddress
import logging
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from remsvc_core.errors import ServerConfigError
from remsvc_core.server.config_keys import EXTENSIONS, KEYS, LOG_LEVELS
from remsvc_core.server.identity_policy import ANONYMOUS, IdentityLimits, IdentityPolicy
from remsvc_core.server.patterns import check_pattern

__all__ = [
    "DEFAULT_OUTPUT_CAP",
    "ServerConfig",
    "is_loopback_host",
    "load_config",
    "parse_config",
]

DEFAULT_OUTPUT_CAP = 262_144

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
    are compiled when the server starts (one that no engine accepts puts the server
    in deny-all mode). ``identity_policies`` maps an identity to its
    ``[identity NAME]`` section, which adds to the server-wide lists.

    The ``[limits]`` fields are enforced by the service: ``max_commands`` (commands
    running at once on the whole server), ``identity_max_commands`` and
    ``identity_max_streams`` (per identity, unless its section overrides them: see
    :meth:`limits_for`), ``idle_stream_timeout_s`` (how long a stream may stay open
    with no command arriving or running).

    ``hidden_env`` names environment variables the commands must not inherit (those
    that held ``[auth]`` tokens). ``notes`` are ``(logging level, text)`` lines the
    server logs when it starts (keys accepted and ignored, risky file permissions).
    ``source`` is the INI file the values came from, used in error messages.
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
    identity_policies: Mapping[str, IdentityPolicy] = field(default_factory=dict)
    max_commands: int = 512
    identity_max_commands: int = 256
    identity_max_streams: int = 2048
    idle_stream_timeout_s: int = 600
    log_file: str | None = None
    log_level: str = "INFO"
    log_debug_level: int = -1
    allow_insecure_auth: bool = False
    drain_grace_s: float = 5.0
    extensions: frozenset[str] = frozenset(EXTENSIONS)
    batch_state_dir: str | None = None
    batch_grace_s: int = 600
    batch_expire_s: int = 7 * 86400
    batch_max_bytes: int = 1 << 30
    audit_file: str | None = None
    audit_include_command: bool = True
    hidden_env: frozenset[str] = frozenset()
    notes: tuple[tuple[int, str], ...] = field(default=(), compare=False, repr=False)
    source: str = field(default="<ServerConfig>", compare=False)

    def __post_init__(self) -> None:
        # Keep the "sorted by label" promise for configs built in code too.
        object.__setattr__(self, "allowlist", sorted((str(k), str(v)) for k, v in self.allowlist))
        object.__setattr__(self, "denylist", sorted((str(k), str(v)) for k, v in self.denylist))
        object.__setattr__(self, "auth", dict(self.auth))
        object.__setattr__(self, "identity_policies", dict(self.identity_policies))

    @property
    def log_level_number(self) -> int:
        return LOG_LEVELS.get(self.log_level.lower(), logging.INFO)

    @property
    def identities(self) -> list[str]:
        """The configured identities (never the tokens)."""
        return sorted(self.auth)

    @property
    def identity_source(self) -> str:
        """What names a caller: ``"token"`` ([auth]), ``"certificate"`` (mutual TLS
        without tokens) or ``"none"`` (every caller is ``anonymous``)."""
        if self.auth:
            return "token"
        if self.tls_enabled and self.tls_ca:
            return "certificate"
        return "none"

    def policy_for(self, identity: str) -> IdentityPolicy:
        """The identity's section, or an empty one (the server-wide lists alone)."""
        return self.identity_policies.get(identity) or IdentityPolicy()

    def limits_for(self, identity: str) -> IdentityLimits:
        """The limits of one identity: its section's, else ``[limits]``'s defaults; an
        identity never gets more commands than the whole server."""
        policy = self.policy_for(identity)
        commands = policy.max_commands or self.identity_max_commands
        return IdentityLimits(
            max_commands=min(commands, self.max_commands),
            max_streams=policy.max_streams or self.identity_max_streams,
        )

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
        self._check_patterns()
        self._check_identities()
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
        name = f"[{section}] {key}" if key else f"[{section}]"
        return ServerConfigError(f"{self.source}: {name}: {problem}")

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

    def _check_patterns(self) -> None:
        for section, rules in (("allowlist", self.allowlist), ("denylist", self.denylist)):
            for label, pattern in rules:
                try:
                    check_pattern(pattern)
                except ValueError as exc:
                    raise self._error(section, label, str(exc)) from None

    def _check_identities(self) -> None:
        allowed = self._identity_names()
        for name, policy in sorted(self.identity_policies.items()):
            section = f"identity {name}"
            if not name or name != name.strip():
                raise self._error(section, "", "an identity section needs a name: [identity NAME]")
            if allowed is not None and name not in allowed:
                raise self._error(section, "", self._no_such_identity(name, allowed))
            problems = policy.problems()
            if problems:
                key, problem = problems[0]
                raise self._error(section, key, problem)

    def _identity_names(self) -> list[str] | None:
        """The names an identity section may have; None when any name can occur."""
        source = self.identity_source
        if source == "token":
            return sorted(self.auth)
        return None if source == "certificate" else [ANONYMOUS]

    def _no_such_identity(self, name: str, allowed: list[str]) -> str:
        if self.identity_source == "token":
            why = f"no identity {name!r} in [auth], so no caller can ever be it"
        else:
            why = (
                f"without [auth] tokens or client certificates every caller is "
                f"{ANONYMOUS!r}, so this section would never apply"
            )
        close = difflib.get_close_matches(name, allowed, n=1)
        hint = f"; did you mean [identity {close[0]}]?" if close else ""
        return f"{why}{hint} (identities: {', '.join(allowed)})"

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


def load_config(
    path: str | os.PathLike[str],
    env: Mapping[str, str] | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> ServerConfig:
    """Read an upstream-style INI file into a checked :class:`ServerConfig`.

    ``overrides`` (``ServerConfig`` field -> value, from command-line flags) win over
    the file's values before anything is checked.
    """
    from remsvc_core.server.config_file import load_config as load

    return load(path, env, overrides)


def parse_config(
    text: str,
    *,
    source: str = "<string>",
    env: Mapping[str, str] | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> ServerConfig:
    """Parse INI text (see :func:`load_config`); ``source`` names it in errors."""
    from remsvc_core.server.config_file import parse_config as parse

    return parse(text, source=source, env=env, overrides=overrides)


def _looks_like_pem(path: str, kind: str) -> bool:
    try:
        with open(path, "rb") as handle:
            head = handle.read(1 << 16)
    except OSError:
        return False
    return b"-----BEGIN " in head and kind.encode() in head
