"""Connection extras and URIs: every documented form, and loud errors for the rest."""

from __future__ import annotations

import json

import pytest

from remsvc_core.connection import flatten_extras, settings_from_fields, settings_from_uri
from remsvc_core.errors import SettingsError


@pytest.fixture
def ca_file(tmp_path):  # type: ignore[no-untyped-def]
    path = tmp_path / "ca.pem"
    path.write_text("not parsed here; only existence is checked")
    return str(path)


def test_original_nested_extra_form_keeps_tls_and_token(ca_file: str) -> None:
    # The original provider's README example: Airflow stores ?extra={...} as a string
    # under a key literally named "extra".
    nested = json.dumps({"use_ssl": True, "ca_cert_path": ca_file, "bearer_token": "tok-123"})
    settings = settings_from_fields("remotehost", 50051, {"extra": nested})
    assert settings.use_tls is True
    assert settings.ca_cert_path == ca_file
    assert settings.bearer_token is not None
    assert settings.bearer_token.reveal() == "tok-123"


def test_uri_with_original_extra_query(ca_file: str) -> None:
    uri = "remsvc://remotehost:50051?extra=" + json.dumps(
        {"use_ssl": True, "ca_cert_path": ca_file, "bearer_token": "secret-prod-token"}
    )
    settings = settings_from_uri(uri)
    assert settings.target == "remotehost:50051"
    assert settings.use_tls
    assert settings.ca_cert_path == ca_file
    assert "secret-prod-token" not in repr(settings)


def test_uri_with_flat_query_and_dunder_extra() -> None:
    assert settings_from_uri("remsvc://h:1?use_ssl=true").use_tls is True
    assert settings_from_uri("remsvc://h?use_ssl=false").target == "h:50051"
    dunder = settings_from_uri('remsvc://h:7?__extra__={"use_ssl": "yes"}')
    assert dunder.use_tls is True
    assert dunder.target == "h:7"


def test_legacy_prefixed_keys_and_blank_form_fields() -> None:
    flat = flatten_extras(
        {"extra__remsvc__use_ssl": True, "ca_cert_path": "", "bearer_token": None}
    )
    assert flat == {"use_ssl": True}


def test_ipv6_host_is_bracketed() -> None:
    assert settings_from_fields("::1", 50051).target == "[::1]:50051"


@pytest.mark.parametrize(
    ("extras", "message"),
    [
        ({"use_tls": True}, "unknown RemSvc connection setting 'use_tls'"),
        ({"use_ssl": "maybe"}, "use_ssl must be true or false"),
        ({"ca_cert_path": "/nonexistent/ca.pem"}, "TLS is off"),
        ({"use_ssl": True, "ca_cert_path": "/nonexistent/ca.pem"}, "does not exist"),
        ({"use_ssl": True, "client_cert_path": "/etc/hostname"}, "needs both"),
        ({"extra": "{not json"}, "not valid JSON"),
        ({"bearer_token": 123}, "bearer_token must be a string"),
    ],
)
def test_settings_that_cannot_be_honoured_are_errors(extras: dict, message: str) -> None:
    with pytest.raises(SettingsError, match=message):
        settings_from_fields("h", 1, extras)


def test_invalid_json_error_does_not_echo_the_token() -> None:
    with pytest.raises(SettingsError) as info:
        settings_from_fields("h", 1, {"extra": '{"bearer_token": "tok-SECRET-9" oops'})
    assert "tok-SECRET-9" not in str(info.value)


@pytest.mark.parametrize(
    ("host", "port", "message"),
    [("", 1, "no host"), ("h", "http", "port must be a number"), ("h", 70000, "out of range")],
)
def test_bad_host_and_port(host: str, port: object, message: str) -> None:
    with pytest.raises(SettingsError, match=message):
        settings_from_fields(host, port, {})  # type: ignore[arg-type]


def test_wrong_scheme_is_refused() -> None:
    with pytest.raises(SettingsError, match="must start with remsvc://"):
        settings_from_uri("grpc://h:1")


@pytest.mark.parametrize(
    "extras",
    [
        # What Airflow's query parsing makes of ?extra={"bearer_token":"tok-a&SECRETPART"}
        {"extra": '{"bearer_token":"tok-a', 'SECRETPART"}': ""},
        {'SECRETPART"}': "", "extra": '{"bearer_token":"tok-a'},
    ],
)
def test_token_split_by_an_unencoded_ampersand_is_not_echoed(extras: dict) -> None:
    with pytest.raises(SettingsError, match="percent-encode") as info:
        settings_from_fields("h", 1, extras)
    assert "SECRETPART" not in str(info.value)
    assert "tok-a" not in str(info.value)


def test_max_receive_mb_sets_the_client_limit() -> None:
    assert settings_from_uri("remsvc://h:1?max_receive_mb=256").max_receive_bytes == 256 << 20
    assert settings_from_fields("h", 1, {}).max_receive_bytes == 64 << 20


@pytest.mark.parametrize("value", ["lots", "0", 4096, True])
def test_bad_max_receive_mb(value: object) -> None:
    with pytest.raises(SettingsError, match="max_receive_mb must be a whole number of MiB"):
        settings_from_fields("h", 1, {"max_receive_mb": value})
