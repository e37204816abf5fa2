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

Every numeric key has an upper bound the server can really run with (a test starts
a server with every key at the top of its range). The kinds of value are in
:mod:`remsvc_core.server.config_kinds`.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass

from remsvc_core.server.config_kinds import (
    Boolean,
    Choice,
    Integer,
    Milliseconds,
    OptionalPath,
    Text,
    TokenSet,
    UpstreamBoolean,
    UserNames,
    ValueKind,
)

__all__ = [
    "FREE_FORM_SECTIONS",
    "IDENTITY_KEYS",
    "IDENTITY_RULE_PREFIXES",
    "IDENTITY_SECTION",
    "KEYS",
    "LOG_LEVELS",
    "ConfigKey",
    "fixed_sections",
    "key_for_field",
    "known_keys",
]

FREE_FORM_SECTIONS = frozenset({"auth", "allowlist", "denylist"})
# The protocol extensions this server implements (docs/protocol-extensions.md).
EXTENSIONS = ("batch/1", "output/1", "heartbeat/1", "usage/1")
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
        "server", "output_cap_bytes", "output_cap_bytes", Integer(1, 1 << 40),
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
        "server", "extensions", "extensions", TokenSet("extension", EXTENSIONS),
        "protocol extensions granted to clients that ask (docs/protocol-extensions.md)",
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
    ConfigKey(
        "batches", "state_dir", "batch_state_dir", OptionalPath(),
        "where kept batches are journaled; unset: batch/1 is not granted",
        upstream=False,
    ),
    ConfigKey(
        "batches", "grace_s", "batch_grace_s", Integer(0, 7 * 86400),
        "how long a kept batch goes on after its stream was lost, waiting to be re-attached",
        upstream=False,
    ),
    ConfigKey(
        "batches", "expire_s", "batch_expire_s", Integer(60, 366 * 86400),
        "how long a batch's journal is kept after its last record",
        upstream=False,
    ),
    ConfigKey(
        "batches", "max_bytes", "batch_max_bytes", Integer(1 << 20, 1 << 40),
        "the most bytes all journals and their kept outputs may take on disk",
        upstream=False,
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
