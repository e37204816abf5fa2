"""Reading the server's INI file into a :class:`ServerConfig`, fail-closed.

The text is split by :mod:`remsvc_core.server.ini_dialect` (upstream's dialect, or
a refusal naming the line). Then every section must be one the server knows, and
every key of a fixed section one of its keys: a misspelt ``[auth ]``,
``[allow_list]``, ``[Allowlist]`` or ``cmd_timeout`` is an error naming the file,
the line and the likely intended name, never a warning and a server that runs
without what the operator meant. Keys upstream knows but this server does not use
(``[log] debug_level``) are accepted, and the server logs a note saying so.
"""

from __future__ import annotations

import difflib
import logging
import os
import re
import stat
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from remsvc_core.errors import ServerConfigError
from remsvc_core.server.config import ServerConfig, expand_vars
from remsvc_core.server.config_keys import (
    FREE_FORM_SECTIONS,
    IDENTITY_KEYS,
    IDENTITY_RULE_PREFIXES,
    IDENTITY_SECTION,
    KEYS,
    ConfigKey,
    fixed_sections,
)
from remsvc_core.server.identity_policy import IdentityPolicy
from remsvc_core.server.ini_dialect import IniEntry, IniSection, read_ini, read_value

__all__ = ["load_config", "parse_config"]

_SECTION_LIST = (
    "[server], [tls], [limits], [log], [auth], [allowlist], [denylist] and [identity NAME]"
)


@dataclass
class _FileValues:
    """What the file says, gathered section by section before it becomes a config."""

    source: str
    fields: dict[str, Any] = field(default_factory=dict)
    auth: dict[str, str] = field(default_factory=dict)
    rules: dict[str, list[tuple[str, str]]] = field(
        default_factory=lambda: {"allowlist": [], "denylist": []}
    )
    identities: dict[str, IdentityPolicy] = field(default_factory=dict)
    secret_vars: set[str] = field(default_factory=set)
    literal_tokens: list[str] = field(default_factory=list)
    notes: list[tuple[int, str]] = field(default_factory=list)


def load_config(
    path: str | os.PathLike[str],
    env: Mapping[str, str] | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> ServerConfig:
    """See :func:`remsvc_core.server.config.load_config`."""
    source = os.fspath(path)
    try:
        with open(source, encoding="utf-8") as handle:
            text = handle.read()
            mode = os.fstat(handle.fileno()).st_mode
    except FileNotFoundError:
        raise ServerConfigError(f"{source}: configuration file not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ServerConfigError(f"{source}: cannot read configuration file: {exc}") from None
    found = _read(text, source, env)
    if found.literal_tokens and mode & stat.S_IROTH:
        found.notes.append(
            (
                logging.WARNING,
                f"{source}: [auth] holds tokens written in the file (identities: "
                f"{', '.join(found.literal_tokens)}) and every user of this machine can read "
                "it; give tokens as ${VAR} from a file only the server reads, or chmod o-r",
            )
        )
    return _build(found, overrides)


def parse_config(
    text: str,
    *,
    source: str = "<string>",
    env: Mapping[str, str] | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> ServerConfig:
    """See :func:`remsvc_core.server.config.parse_config`."""
    return _build(_read(text, source, env), overrides)


def _read(text: str, source: str, env: Mapping[str, str] | None) -> _FileValues:
    environ = os.environ if env is None else env
    found = _FileValues(source)
    for section in read_ini(text, source):
        kind, name = _section_kind(section, source)
        if kind == IDENTITY_SECTION:
            _read_identity(found, section, name)
        elif kind == "auth":
            _read_auth(found, section, environ)
        elif kind in FREE_FORM_SECTIONS:
            for entry in section.entries:
                found.rules[kind].append((entry.key, _value(found, section, entry)))
        else:
            _read_fixed(found, section, environ)
    return found


def _build(found: _FileValues, overrides: Mapping[str, Any] | None) -> ServerConfig:
    values = {**found.fields, **(overrides or {})}
    if not values.get("tls_enabled"):
        # Upstream ignores cert/key/ca while TLS is off; so do we, but say so.
        for name in ("cert", "key", "ca"):
            if values.pop(f"tls_{name}", None):
                found.notes.append(
                    (
                        logging.WARNING,
                        f"{found.source}: [tls] {name} is ignored because TLS is not enabled",
                    )
                )
    config = ServerConfig(
        **values,
        auth=found.auth,
        hidden_env=frozenset(found.secret_vars),
        allowlist=found.rules["allowlist"],
        denylist=found.rules["denylist"],
        identity_policies=found.identities,
        notes=tuple(found.notes),
        source=found.source,
    )
    config.validate()
    return config


# -- sections -------------------------------------------------------------------------


def _section_kind(section: IniSection, source: str) -> tuple[str, str]:
    """(``server``/``tls``/.../``identity``, the identity's name or "")."""
    name = section.name
    if name in fixed_sections() or name in FREE_FORM_SECTIONS:
        return name, ""
    words = name.split(None, 1)
    if words[0] == IDENTITY_SECTION and len(words) == 2:
        return IDENTITY_SECTION, words[1]
    raise ServerConfigError(f"{source}: line {section.line}: {_unknown_section(name)}")


def _unknown_section(name: str) -> str:
    words = name.split(None, 1)
    if words[0].lower() == IDENTITY_SECTION:
        if len(words) == 1:
            return (
                f"section [{name}] needs the identity's name: [identity NAME], NAME an "
                "identity of [auth] (or of a client certificate)"
            )
        return f"section [{name}]: write [identity {words[1]}] (section names are lower case)"
    known = [*fixed_sections(), *sorted(FREE_FORM_SECTIONS)]
    lowered = name.lower()
    if lowered in known:
        return (
            f"section [{name}]: write [{lowered}]; section names are lower case (upstream, "
            f"on Linux, would not see [{name}] and would run without it)"
        )
    guess = _close(lowered, known)
    hint = f"; did you mean [{guess}]?" if guess else ""
    return f"unknown section [{name}]{hint} The sections are {_SECTION_LIST}."


def _close(name: str, candidates: list[str]) -> str | None:
    """The candidate ``name`` most likely meant (spelling, or ``_``/``-``/blanks aside)."""

    def squeeze(text: str) -> str:
        return re.sub(r"[\s_.-]", "", text.lower())

    for candidate in candidates:
        if squeeze(candidate) == squeeze(name):
            return candidate
    close = difflib.get_close_matches(name, candidates, n=1, cutoff=0.6)
    return close[0] if close else None


# -- values ---------------------------------------------------------------------------


def _value(found: _FileValues, section: IniSection, entry: IniEntry, secret: bool = False) -> str:
    where = f"{found.source}: line {entry.line}: [{section.name}] {entry.key}"
    return read_value(entry.raw, where, secret=secret)


def _read_fixed(found: _FileValues, section: IniSection, environ: Mapping[str, str]) -> None:
    table = {key.name: key for key in KEYS if key.section == section.name}
    for entry in section.entries:
        key = table.get(entry.key)
        if key is None:
            problem = _unknown_key(section.name, entry.key, list(table), KEYS)
            raise ServerConfigError(
                f"{found.source}: line {entry.line}: [{section.name}] {entry.key}: {problem}"
            )
        where = f"{found.source}: [{section.name}] {entry.key}"
        text = expand_vars(_value(found, section, entry), environ, where)
        found.fields[key.field] = _parse(key, text, where)
        if key.ignored:
            found.notes.append(
                (
                    logging.INFO,
                    f"{found.source}: [{section.name}] {entry.key} = {text.strip()} is "
                    f"accepted for upstream's files and ignored: {key.ignored}",
                )
            )


def _parse(key: ConfigKey, text: str, where: str) -> object:
    try:
        return key.kind.parse(text)
    except ValueError as exc:
        raise ServerConfigError(f"{where}: {exc}") from None


def _unknown_key(section: str, name: str, keys: list[str], table: tuple[ConfigKey, ...]) -> str:
    lowered = name.lower()
    if lowered in keys:
        return (
            f"write {lowered}; key names are lower case (upstream, on Linux, would ignore {name!r})"
        )
    elsewhere = sorted({key.section for key in table if key.name == lowered})
    if elsewhere:
        return f"{lowered} is a key of [{elsewhere[0]}], not of [{section}]"
    guess = _close(name, keys)
    hint = f"; did you mean {guess}?" if guess else ""
    return f"unknown key{hint} The keys of [{section}] are {', '.join(keys)}."


def _unknown_identity_key(name: str, keys: list[str]) -> str:
    rule = re.fullmatch(r"(allow|deny)[^A-Za-z0-9]?(.+)", name, flags=re.IGNORECASE)
    if rule is not None:
        return (
            f"unknown key; did you mean {rule[1].lower()}.{rule[2]}? (a rule is "
            "allow.LABEL = pattern or deny.LABEL = pattern)"
        )
    problem = _unknown_key(IDENTITY_SECTION, name, keys, IDENTITY_KEYS)
    return problem.replace(
        f"The keys of [{IDENTITY_SECTION}] are",
        "The keys of an identity section are allow.LABEL, deny.LABEL,",
    )


def _read_auth(found: _FileValues, section: IniSection, environ: Mapping[str, str]) -> None:
    for entry in section.entries:
        used: set[str] = set()
        token = expand_vars(
            _value(found, section, entry, secret=True),
            environ,
            f"{found.source}: [auth] {entry.key}",
            used,
        )
        # Variables that carry tokens are kept out of the commands' environment.
        found.secret_vars |= used
        if not used:
            found.literal_tokens.append(entry.key)
        # Tokens are checked (non-empty, one per identity) by ServerConfig.validate.
        found.auth[entry.key] = token.strip()


def _read_identity(found: _FileValues, section: IniSection, name: str) -> None:
    if name in found.identities:
        raise ServerConfigError(
            f"{found.source}: line {section.line}: [identity {name}]: section given twice"
        )
    table = {key.name: key for key in IDENTITY_KEYS}
    rules: dict[str, list[tuple[str, str]]] = {"allow.": [], "deny.": []}
    values: dict[str, Any] = {}
    for entry in section.entries:
        prefix = next((p for p in IDENTITY_RULE_PREFIXES if entry.key.startswith(p)), None)
        if prefix is not None:
            rules[prefix].append((entry.key[len(prefix) :], _value(found, section, entry)))
            continue
        key = table.get(entry.key)
        if key is None:
            raise ServerConfigError(
                f"{found.source}: line {entry.line}: [{section.name}] {entry.key}: "
                + _unknown_identity_key(entry.key, list(table))
            )
        # Policy is never expanded from the environment.
        where = f"{found.source}: [{section.name}] {entry.key}"
        values[key.field] = _parse(key, _value(found, section, entry), where)
    found.identities[name] = IdentityPolicy(
        allowlist=rules["allow."], denylist=rules["deny."], **values
    )
