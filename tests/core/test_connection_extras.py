"""The one table of connection extras: every entry is complete and means what it says.

The connection parser, the Airflow form and the CLI are rendered from this table; the
tests here check the table itself, and that each extra, written the way a user would
(a string in a URI query), fills the ChannelSettings field it names.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest

from remsvc_core.connection import EXTRA_FIELDS, settings_from_uri
from remsvc_core.errors import SettingsError
from remsvc_core.settings import CONNECTION_EXTRAS, TLS_FIELDS, ChannelSettings

SETTINGS_FIELDS = {f.name for f in dataclasses.fields(ChannelSettings)}
TOKEN = "tok-extras-8d2e"


def samples(pem: str) -> dict[str, tuple[str, Any]]:
    """For each extra: a value as a user types it, and the field value it must give.

    A new extra without a sample here fails ``test_every_extra_has_a_sample``.
    """
    return {
        "use_ssl": ("true", True),
        "ca_cert_path": (pem, pem),
        "client_cert_path": (pem, pem),
        "client_key_path": (pem, pem),
        "tls_server_name": ("remsvc.example.com", "remsvc.example.com"),
        "bearer_token": (TOKEN, TOKEN),
        "max_receive_mb": ("256", 256 << 20),
        "keepalive_s": ("30", 30),
    }


@pytest.fixture
def pem(tmp_path: Path) -> str:
    path = tmp_path / "file.pem"
    path.write_text("only existence is checked here")
    return str(path)


def test_every_extra_fills_a_real_settings_field_once() -> None:
    names = [extra.name for extra in CONNECTION_EXTRAS]
    fields = [extra.field for extra in CONNECTION_EXTRAS]

    assert len(set(names)) == len(names)
    assert len(set(fields)) == len(fields)
    assert set(fields) <= SETTINGS_FIELDS
    assert set(TLS_FIELDS) <= set(fields)
    assert tuple(names) == EXTRA_FIELDS


def test_every_extra_is_described_for_people() -> None:
    for extra in CONNECTION_EXTRAS:
        assert extra.label, extra.name
        assert extra.description.endswith("."), extra.name
        assert extra.kind in ("boolean", "string", "password"), extra.name
        if extra.flag:
            assert extra.flag.startswith("--"), extra.name
            assert extra.flag_help, extra.name
            assert bool(extra.metavar) is (extra.kind != "boolean"), extra.name


def test_the_token_is_masked_and_never_a_command_line_option() -> None:
    secrets = [extra for extra in CONNECTION_EXTRAS if extra.secret]

    assert [extra.name for extra in secrets] == ["bearer_token"]
    assert all(not extra.flag for extra in secrets)
    assert all(extra.flag for extra in CONNECTION_EXTRAS if not extra.secret)


def test_every_extra_has_a_sample(pem: str) -> None:
    assert set(samples(pem)) == set(EXTRA_FIELDS)


@pytest.mark.parametrize("name", EXTRA_FIELDS)
def test_each_extra_typed_in_a_uri_fills_its_field(name: str, pem: str) -> None:
    extra = next(e for e in CONNECTION_EXTRAS if e.name == name)
    text, expected = samples(pem)[name]
    tls = "" if name == "use_ssl" or not extra.implies_tls else "use_ssl=true&"
    # mutual TLS needs both halves
    pair = {"client_cert_path": "client_key_path", "client_key_path": "client_cert_path"}
    other = f"&{pair[name]}={quote(pem)}" if name in pair else ""

    settings = settings_from_uri(f"remsvc://h:1?{tls}{name}={quote(text)}{other}")

    value = getattr(settings, extra.field)
    assert (value.reveal() if extra.secret else value) == expected
    default = getattr(ChannelSettings(target="h:1"), extra.field)
    assert value != default  # the sample proves something


@pytest.mark.parametrize("name", [e.name for e in CONNECTION_EXTRAS if e.kind == "string"])
def test_a_text_extra_that_is_not_text_is_an_error(name: str) -> None:
    extra = next(e for e in CONNECTION_EXTRAS if e.name == name)
    with pytest.raises(SettingsError, match=name):
        extra.parse(["not", "text"], name)


def test_errors_name_the_setting_as_the_user_wrote_it() -> None:
    max_receive = next(e for e in CONNECTION_EXTRAS if e.name == "max_receive_mb")
    with pytest.raises(SettingsError, match="--max-receive-mb must be a whole number of MiB"):
        max_receive.parse("lots", "--max-receive-mb")


@pytest.mark.parametrize(("value", "mib"), [("8", 8), (" 8 ", 8), (8, 8), (8.0, 8), ("2047", 2047)])
def test_whole_numbers_in_any_spelling(value: object, mib: int) -> None:
    max_receive = next(e for e in CONNECTION_EXTRAS if e.name == "max_receive_mb")
    assert max_receive.parse(value, "max_receive_mb") == mib << 20


@pytest.mark.parametrize("value", [8.5, float("inf"), float("nan"), "8.0", None, [8], "2048"])
def test_not_a_whole_number_in_range(value: object) -> None:
    max_receive = next(e for e in CONNECTION_EXTRAS if e.name == "max_receive_mb")
    with pytest.raises(SettingsError, match="whole number of MiB from 1 to 2047"):
        max_receive.parse(value, "max_receive_mb")
