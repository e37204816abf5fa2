"""Connection settings in the forms people write them: Airflow-style extras and
``remsvc://`` URIs. One interpretation, shared by the Airflow hook and the CLI.

Every form the original provider documented works, including its own URI examples
(``remsvc://host:50051?extra={"use_ssl":true,...}``), which Airflow parses into an
extra field literally named ``extra`` holding a JSON string.
"""

from __future__ import annotations

import difflib
import json
import re
from collections.abc import Mapping
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

from remsvc_core.errors import SettingsError
from remsvc_core.settings import (
    CONNECTION_EXTRAS,
    DEFAULT_PORT,
    ChannelSettings,
    parse_bool as parse_bool,
)

CONN_TYPE = "remsvc"
_EXTRAS = {extra.name: extra for extra in CONNECTION_EXTRAS}
EXTRA_FIELDS = tuple(_EXTRAS)
# Airflow 2-style form fields were stored with this prefix; accept them as aliases.
_LEGACY_PREFIX = f"extra__{CONN_TYPE}__"
_PERCENT_ENCODE_HINT = (
    "in a connection URI, percent-encode values that contain & = + or # (urllib.parse.quote)"
)
_SETTING_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,63}")
# Words that make an unknown key look like a security setting: ignoring it could mean
# less TLS or another identity than the user wrote, so such a key stays an error.
_SECURITY_WORDS = re.compile(
    r"ssl|tls|cert|(^|_)ca($|_)|key|token|auth|bearer|secret|pass|verify|secure|cred|sni",
    re.IGNORECASE,
)
_SECURITY_EXTRAS = (
    *(e.name for e in CONNECTION_EXTRAS if e.implies_tls or e.secret),
    "use_ssl",
)


def flatten_extras(
    extras: Mapping[str, Any] | str | None, ignored: list[str] | None = None
) -> dict[str, Any]:
    """Merge nested ``extra`` JSON and legacy prefixed keys into one flat dict.

    Empty strings count as unset (Airflow's form saves blank fields as ""). A key
    that is not a RemSvc setting is an error: a typo must not silently drop TLS. With
    ``ignored`` given (a list to fill), an unknown key that does not look like a
    security setting is appended there and skipped instead: airflow-provider-remsvc
    1.0.0 ignored every key it did not know, and connections made for it may have some.
    """
    if extras is None or extras == "":
        return {}
    if isinstance(extras, str):
        extras = _load_json(extras, "connection extra")
    if not isinstance(extras, Mapping):
        raise SettingsError("connection extra must be a JSON object")
    flat: dict[str, Any] = {}
    for key, value in extras.items():
        if key in ("extra", "__extra__"):
            nested = (
                _load_json(value, f"extra field {key!r}", hint=_PERCENT_ENCODE_HINT)
                if isinstance(value, str)
                else value
            )
            flat.update(flatten_extras(nested, ignored))
            continue
        name = key[len(_LEGACY_PREFIX) :] if key.startswith(_LEGACY_PREFIX) else key
        if name not in EXTRA_FIELDS:
            if ignored is None:
                raise SettingsError(_unknown_setting_message(key))
            if not _ignorable(key):
                raise SettingsError(
                    _unknown_setting_message(key) + "; it looks like a TLS, token or "
                    "certificate setting, which is never ignored: fix or remove it"
                )
            ignored.append(key)
            continue
        if value is None or value == "":
            continue
        flat[name] = value
    return flat


def settings_from_fields(
    host: str | None,
    port: int | str | None,
    extras: Mapping[str, Any] | str | None = None,
    *,
    bearer_token: str | None = None,
    metadata: Any = (),
    ignored: list[str] | None = None,
) -> ChannelSettings:
    """Build :class:`ChannelSettings` from a connection's host, port and extras.

    ``bearer_token`` (the Airflow connection's Password field, say) is the token; an
    extra ``bearer_token`` with another value is an error. ``ignored``: see
    :func:`flatten_extras`.
    """
    if not host:
        raise SettingsError("the connection has no host; set it to the RemSvc server's name")
    values = _settings_values(flatten_extras(extras, ignored))
    if bearer_token:
        given = values.get("bearer_token")
        if given is not None and given.reveal() != bearer_token:
            raise SettingsError(
                "the bearer token is given twice with different values (the Password field "
                "and the bearer_token extra); keep one of them"
            )
        values["bearer_token"] = bearer_token
    return ChannelSettings(
        target=f"{_host_for_target(host)}:{_port(port)}", metadata=metadata, **values
    )


def _settings_values(flat: Mapping[str, Any]) -> dict[str, Any]:
    """ChannelSettings field values for flat extras (see :func:`flatten_extras`)."""
    return {_EXTRAS[name].field: _EXTRAS[name].parse(value, name) for name, value in flat.items()}


def settings_from_uri(uri: str, **overrides: Any) -> ChannelSettings:
    """Parse ``remsvc://host:port?...`` the way Airflow parses a connection URI.

    Query parameters become extras; ``__extra__`` holds a JSON object of extras; the
    original provider's ``?extra={...}`` form is honoured too.
    """
    try:
        parts = urlsplit(uri)
    except ValueError as exc:  # e.g. an unbalanced "[" around an IPv6 address
        raise SettingsError(f"connection URI cannot be parsed: {exc}") from None
    if parts.scheme != CONN_TYPE:
        raise SettingsError(
            f"connection URI must start with {CONN_TYPE}://, e.g. remsvc://host:50051"
        )
    extras: dict[str, Any] = {}
    for key, value in parse_qsl(parts.query, keep_blank_values=True):
        if key == "__extra__":
            extras.update(_load_json(value, "__extra__"))
        else:
            extras[key] = value
    try:
        port = parts.port
    except ValueError as exc:
        raise SettingsError(f"connection URI has an invalid port: {exc}") from None
    return settings_from_fields(unquote(parts.hostname or ""), port, extras, **overrides)


def _ignorable(key: Any) -> bool:
    """An unknown key that can be skipped: a plain name, not a security setting's look-alike."""
    if not isinstance(key, str) or not _SETTING_NAME.fullmatch(key):
        return False  # a fragment of a value split in a URI, maybe of a token
    if _SECURITY_WORDS.search(key):
        return False
    return not difflib.get_close_matches(key.lower(), _SECURITY_EXTRAS, n=1, cutoff=0.7)


def _unknown_setting_message(key: Any) -> str:
    known = ", ".join(EXTRA_FIELDS)
    if isinstance(key, str) and _SETTING_NAME.fullmatch(key):
        close = difflib.get_close_matches(key.lower(), EXTRA_FIELDS, n=1, cutoff=0.6)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        return f"unknown RemSvc connection setting {key!r}{hint}; known settings are {known}"
    # A key like 'c"}' is a fragment of a value split at an unencoded '&' in a URI,
    # and that value may be a token: never echo it.
    return (
        "the connection has a setting whose name is not a valid identifier, probably part "
        f"of a value split at an unencoded '&' or '='; {_PERCENT_ENCODE_HINT}. "
        f"Known settings are {known}"
    )


def _port(port: int | str | None) -> int:
    if port in (None, ""):
        return DEFAULT_PORT
    try:
        number = int(port)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise SettingsError(f"port must be a number, got {port!r}") from None
    if not 0 < number < 65536:
        raise SettingsError(f"port {number} is out of range 1-65535")
    return number


def _host_for_target(host: str) -> str:
    # A bare IPv6 address needs brackets in a gRPC target.
    return f"[{host}]" if ":" in host and not host.startswith("[") else host


def _load_json(text: str, what: str, hint: str = "") -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        # Never echo the text: it may hold a bearer token.
        raise SettingsError(
            f"{what} is not valid JSON ({exc.msg} at position {exc.pos})"
            + (f"; {hint}" if hint else "")
        ) from None
