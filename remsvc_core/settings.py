"""How to reach a RemSvc server: :class:`ChannelSettings`, and the connection extras
that fill it.

:data:`CONNECTION_EXTRAS` declares each extra once (name, label, help, placeholder,
parser, the field it fills, its command-line option); the connection parser, the
Airflow connection form and the CLI are rendered from it. Adding an extra means one
entry here, the field it fills, and the code that uses the value.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Literal

from remsvc_core.errors import SettingsError
from remsvc_core.metadata import (  # re-exported: callers import the metadata rules from here
    normalise_metadata as normalise_metadata,
    user_metadata as user_metadata,
)
from remsvc_core.secret import Secret

DEFAULT_PORT = 50051
# Upstream caps stdout and stderr at 256 KiB each, but our server's cap can be raised;
# 64 MiB keeps large outputs working without letting one response exhaust memory.
DEFAULT_MAX_RECEIVE_BYTES = 64 * 1024 * 1024
# Keepalive pings more often than this are abuse to gRPC servers (grpc-go and
# grpc-java clients have the same floor); our server accepts them this often.
MIN_KEEPALIVE_S = 10
MAX_KEEPALIVE_S = 86_400
# The settings that mean nothing on a plaintext channel.
TLS_FIELDS = ("ca_cert_path", "client_cert_path", "client_key_path", "tls_server_name")
# Settings sent with each call rather than fixed in a channel.
_PER_CALL_FIELDS = frozenset({"bearer_token", "metadata"})


@dataclass(frozen=True)
class ChannelSettings:
    """Everything needed to open a channel and authenticate calls.

    ``bearer_token`` is a :class:`Secret` and never appears in ``repr``. ``metadata``
    keys are normalised to lower case; a bearer token's ``authorization`` header wins
    over one given in ``metadata``.
    """

    target: str
    use_tls: bool = False
    ca_cert_path: str | None = None
    client_cert_path: str | None = None
    client_key_path: str | None = None
    tls_server_name: str | None = None
    bearer_token: Secret | None = field(default=None, repr=False)
    metadata: tuple[tuple[str, str], ...] = ()
    max_receive_bytes: int = DEFAULT_MAX_RECEIVE_BYTES
    keepalive_s: int | None = None  # None: gRPC's sparse default pings (see channels.py)

    def __post_init__(self) -> None:
        if isinstance(self.bearer_token, str):
            object.__setattr__(
                self, "bearer_token", Secret(self.bearer_token) if self.bearer_token else None
            )
        if self.keepalive_s is not None:
            object.__setattr__(self, "keepalive_s", check_keepalive(self.keepalive_s))
        object.__setattr__(self, "metadata", normalise_metadata(self.metadata))
        self.validate()

    def validate(self) -> None:
        """Raise :class:`SettingsError` for a setting that cannot be honoured."""
        if not self.target or self.target.startswith(":") or self.target.endswith(":"):
            raise SettingsError(f"target {self.target!r} is not host:port, e.g. 127.0.0.1:50051")
        tls_only = {name: getattr(self, name) for name in TLS_FIELDS}
        if not self.use_tls:
            given = [name for name, value in tls_only.items() if value]
            if given:
                raise SettingsError(
                    f"{', '.join(given)} given but TLS is off; set use_ssl to true "
                    "or remove the TLS settings"
                )
        if bool(self.client_cert_path) != bool(self.client_key_path):
            raise SettingsError(
                "mutual TLS needs both client_cert_path and client_key_path; only one is set"
            )
        for name in ("ca_cert_path", "client_cert_path", "client_key_path"):
            path = tls_only[name]
            if path and not os.path.isfile(path):
                raise SettingsError(f"{name} {path!r} does not exist or is not a file")
        if self.max_receive_bytes <= 0:
            raise SettingsError("max_receive_bytes must be positive")

    def call_metadata(self, extra: Iterable[tuple[str, str]] = ()) -> list[tuple[str, str]]:
        """Metadata for one call: settings metadata, then ``extra``, then authorization.

        Later duplicates replace earlier ones; the bearer token always wins.
        """
        merged: dict[str, str] = dict(self.metadata)
        merged.update(normalise_metadata(extra))
        if self.bearer_token:
            merged["authorization"] = f"Bearer {self.bearer_token.reveal()}"
        return list(merged.items())

    def channel_key(self) -> tuple[Any, ...]:
        """What makes two channels interchangeable: every setting but the per-call ones
        (the token and metadata go with each call, not into a channel)."""
        return tuple(
            getattr(self, f.name)
            for f in dataclasses.fields(self)
            if f.name not in _PER_CALL_FIELDS
        )

    def safe_description(self) -> str:
        """For logs: where and how, never the token."""
        parts = [self.target, "TLS" if self.use_tls else "plaintext"]
        if self.client_cert_path:
            parts.append("mTLS")
        if self.bearer_token:
            parts.append("bearer token")
        return ", ".join(parts)


def check_keepalive(value: object, name: str = "keepalive_s") -> int:
    """``value`` as a keepalive interval in whole seconds, or :class:`SettingsError`."""
    return whole_number(
        value,
        name,
        MIN_KEEPALIVE_S,
        MAX_KEEPALIVE_S,
        "seconds",
        why=f"gRPC servers take pings more frequent than every {MIN_KEEPALIVE_S} s for abuse",
    )


def check_timeout(value: object, name: str = "stream_timeout") -> float:
    """``value`` as a positive, finite number of seconds, or :class:`SettingsError`."""
    if (
        isinstance(value, bool)
        or not isinstance(value, (int, float))
        or not math.isfinite(value)
        or value <= 0
    ):
        raise SettingsError(f"{name} must be a positive number of seconds, got {value!r}")
    return float(value)


# -- connection extras: each declared once ----------------------------------------------


@dataclass(frozen=True)
class ConnectionExtra:
    """One setting of a ``remsvc`` connection's extra JSON, and how each surface shows it.

    ``parse(value, name)`` turns the value as a user wrote it (JSON, a URI query string,
    a form field, a command-line option) into the value of the :class:`ChannelSettings`
    field ``field``; ``name`` is how the user spelled the setting, for the error.
    """

    name: str  # the key in the extra JSON and in a URI query
    field: str  # the ChannelSettings field it fills
    parse: Callable[[Any, str], Any]
    label: str  # the connection form's label
    kind: Literal["boolean", "string", "password"]  # the form's input; a password is masked
    description: str  # the form's help text
    placeholder: str = ""  # a sample shown in the empty form field
    flag: str = ""  # the command-line option; none for a secret (ps shows command lines)
    metavar: str = ""
    flag_help: str = ""

    @property
    def secret(self) -> bool:
        return self.kind == "password"

    @property
    def implies_tls(self) -> bool:
        """Given at all, it asks for TLS (it means nothing on a plaintext channel)."""
        return self.field in TLS_FIELDS


_TRUE = {"true", "1", "yes", "on"}
_FALSE = {"false", "0", "no", "off", ""}


def parse_bool(value: Any, name: str) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in _TRUE | _FALSE:
        return value.strip().lower() in _TRUE
    raise SettingsError(f"{name} must be true or false, got {value!r}")


def _text(value: Any, name: str) -> str:
    if not isinstance(value, str):
        raise SettingsError(f"{name} must be a string, got {type(value).__name__}")
    return value


def _secret(value: Any, name: str) -> Secret:
    if not isinstance(value, str):  # never echo it: it is meant to be a credential
        raise SettingsError(f"{name} must be a string")
    return Secret(value)


def whole_number(value: Any, name: str, low: int, high: int, unit: str, why: str = "") -> int:
    """``value`` (an int, or a string or float holding one) from ``low`` to ``high``."""
    number = value
    if isinstance(value, str):
        with contextlib.suppress(ValueError):
            number = int(value.strip())
    elif isinstance(value, float) and value.is_integer():
        number = int(value)
    if isinstance(number, bool) or not isinstance(number, int) or not low <= number <= high:
        raise SettingsError(
            f"{name} must be a whole number of {unit} from {low} to {high}, got {value!r}"
            + (f" ({why})" if why else "")
        )
    return number


def _mebibytes(value: Any, name: str) -> int:
    # 2047 MiB keeps the byte count within gRPC's int32 message length.
    return whole_number(value, name, 1, 2047, "MiB") << 20


CONNECTION_EXTRAS: tuple[ConnectionExtra, ...] = (
    ConnectionExtra(
        "use_ssl",
        "use_tls",
        parse_bool,
        "Use TLS",
        "boolean",
        "Encrypt the channel with TLS. Needed whenever a bearer token is sent.",
        flag="--tls",
        flag_help="use TLS (implied by the options below)",
    ),
    ConnectionExtra(
        "ca_cert_path",
        "ca_cert_path",
        _text,
        "CA certificate path",
        "string",
        "PEM file of the CA that signed the server certificate, on the worker and "
        "triggerer hosts. Leave empty to use the system trust store.",
        "/etc/ssl/remsvc-ca.pem",
        flag="--ca-cert",
        metavar="PATH",
        flag_help="CA bundle to verify the server with",
    ),
    ConnectionExtra(
        "client_cert_path",
        "client_cert_path",
        _text,
        "Client certificate path (mutual TLS)",
        "string",
        "PEM client certificate, for servers configured with a [tls] ca. "
        "Set together with the client key path.",
        "/etc/ssl/remsvc-client.pem",
        flag="--client-cert",
        metavar="PATH",
        flag_help="client certificate for mutual TLS",
    ),
    ConnectionExtra(
        "client_key_path",
        "client_key_path",
        _text,
        "Client key path (mutual TLS)",
        "string",
        "PEM private key of the client certificate.",
        "/etc/ssl/remsvc-client.key",
        flag="--client-key",
        metavar="PATH",
        flag_help="client private key for mutual TLS",
    ),
    ConnectionExtra(
        "tls_server_name",
        "tls_server_name",
        _text,
        "TLS server name override",
        "string",
        "Host name to verify in the server certificate when it differs from Host "
        "(for example when connecting by IP address).",
        "remsvc.example.com",
        flag="--tls-server-name",
        metavar="NAME",
        flag_help="name to verify in the server certificate",
    ),
    ConnectionExtra(
        "bearer_token",
        "bearer_token",
        _secret,
        "Bearer token",
        "password",
        "Sent as 'authorization: Bearer <token>' on every call; must match an entry "
        "in the server's [auth] section. Leave empty when the server has no [auth].",
    ),
    ConnectionExtra(
        "max_receive_mb",
        "max_receive_bytes",
        _mebibytes,
        "Largest response (MiB)",
        "string",
        "Biggest single result the client accepts, in MiB (default 64). Raise it only "
        "for servers whose output_cap_bytes was raised above that.",
        "64",
        flag="--max-receive-mb",
        metavar="MIB",
        flag_help="largest single result to accept, in MiB (default 64; raise it for servers "
        "whose output_cap_bytes is higher)",
    ),
    ConnectionExtra(
        "keepalive_s",
        "keepalive_s",
        check_keepalive,
        "Keepalive interval (seconds)",
        "string",
        "Ping the server this often while a command runs, so that a proxy or load balancer "
        "that drops idle connections keeps a silent command's stream: below its idle "
        f"timeout, at least {MIN_KEEPALIVE_S}. The server must accept pings this often "
        "(ours does; upstream's default is every 300 s). Empty: one ping after 5 minutes "
        "of silence, then at most one more.",
        "30",
        flag="--keepalive-s",
        metavar="SECONDS",
        flag_help=f"ping the server this often while a call is open ({MIN_KEEPALIVE_S} to "
        f"{MAX_KEEPALIVE_S}), for proxies that drop idle connections; the server must "
        "accept pings this often",
    ),
)
