"""Airflow finds the provider and shows the ``remsvc`` connection form (3.1 and 3.2+)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import types
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from unittest import mock

import pytest
from airflow_runs import TOKEN, tls_uri

from remsvc_core.settings import CONNECTION_EXTRAS
from remsvc_provider import _connection_form as form, get_provider_info

pytestmark = [pytest.mark.airflow, pytest.mark.usefixtures("airflow_db")]

CLI_TIMEOUT_S = 180.0
PACKAGE = "airflow-provider-remsvc"
EXTRAS = {extra.name: extra for extra in CONNECTION_EXTRAS}


def airflow_cli(
    *args: str, env_extra: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """The real ``airflow`` command line, in a subprocess, sharing this session's home."""
    env = {**os.environ, **(env_extra or {})}
    airflow = Path(sys.executable).with_name("airflow")
    return subprocess.run(
        [str(airflow), *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=CLI_TIMEOUT_S,
        stdin=subprocess.DEVNULL,
        check=False,
    )


def test_provider_info_matches_airflows_schema() -> None:
    import jsonschema

    schema_path = Path(__import__("airflow").__file__).with_name("provider_info.schema.json")
    schema = json.loads(schema_path.read_text())

    jsonschema.validate(get_provider_info(), schema)
    # The declarative form (conn-fields, ui-field-behaviour) is described by the
    # provider.yaml schema that Airflow 3.2+ ships.
    yaml_schema = json.loads(schema_path.with_name("provider.yaml.schema.json").read_text())
    jsonschema.validate(
        get_provider_info()["connection-types"], yaml_schema["properties"]["connection-types"]
    )


def test_form_offers_exactly_the_settings_the_parser_knows() -> None:
    from remsvc_core.connection import EXTRA_FIELDS

    # Every setting but the token is an extra field; the token is the Password field.
    assert set(form.conn_fields()) | {"bearer_token"} == set(EXTRA_FIELDS)
    assert "bearer_token" not in form.conn_fields()
    for name, field in form.conn_fields().items():
        assert field["label"] == EXTRAS[name].label
        assert field["description"].startswith(EXTRAS[name].description)
        if EXTRAS[name].placeholder:  # the sample is in the help text, never a suggestion
            assert field["description"].endswith(f"For example: {EXTRAS[name].placeholder}")
        assert "examples" not in field["schema"]
    assert form.ui_field_behaviour_provider_info()["relabeling"]["password"] == "Bearer token"


def test_dag_authors_doc_describes_every_field_of_the_form() -> None:
    doc = Path(__file__).resolve().parents[2] / "docs" / "dag-authors.md"
    rows = {
        cells[2]: cells[1]
        for line in doc.read_text(encoding="utf-8").splitlines()
        if line.startswith("| ") and len(cells := [c.strip() for c in line.split("|")]) > 3
    }

    for name, extra in EXTRAS.items():
        assert rows.get(f"`{name}`") == extra.label, f"docs/dag-authors.md: {name}"


def runtime_hooks() -> Any:
    """The hooks registry where each Airflow version supports it: the Task SDK's
    runtime manager from 3.2 (``ProvidersManager.hooks`` is deprecated in 3.3)."""
    try:
        from airflow.sdk.providers_manager_runtime import ProvidersManagerTaskRuntime
    except ImportError:  # Airflow 3.1
        from airflow.providers_manager import ProvidersManager

        return ProvidersManager().hooks
    return ProvidersManagerTaskRuntime().hooks


def test_providers_manager_registers_hook_and_version() -> None:
    from airflow.providers_manager import ProvidersManager

    manager = ProvidersManager()

    assert manager.providers[PACKAGE].version == get_provider_info()["versions"][0]
    hook = runtime_hooks()["remsvc"]
    assert hook is not None
    assert hook.hook_class_name == "remsvc_provider.hooks.remsvc.RemSvcHook"
    assert hook.connection_id_attribute_name == "grpc_conn_id"
    assert hook.hook_name == "RemSvc gRPC"


# What the API server hands the UI, computed the way it does: in a fresh process whose
# first use of the providers manager is HookMetaService (which stands in for wtforms;
# once a process initialised the hooks without it, 3.1 has no form for any provider).
_UI_METADATA = """
import json
from airflow.api_fastapi.core_api.services.ui.connections import HookMetaService
(meta,) = [m for m in HookMetaService.hook_meta_data() if m.connection_type == "remsvc"]
print("UI-METADATA " + meta.model_dump_json())
"""


@pytest.fixture(scope="module")
def ui_metadata() -> Any:
    from airflow.api_fastapi.core_api.datamodels.connections import ConnectionHookMetaData

    done = subprocess.run(
        [sys.executable, "-c", _UI_METADATA],
        capture_output=True,
        text=True,
        timeout=CLI_TIMEOUT_S,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    line = next(x for x in done.stdout.splitlines() if x.startswith("UI-METADATA "))
    return ConnectionHookMetaData.model_validate_json(line.removeprefix("UI-METADATA "))


def test_ui_metadata_the_api_server_serves(ui_metadata: Any) -> None:
    """What the connection form in the 3.x UI is built from (from the provider info on
    3.2+, from the hook's methods on 3.1)."""
    meta = ui_metadata

    assert meta.hook_name == "RemSvc gRPC"
    standard = meta.standard_fields
    assert standard.login.hidden
    assert not standard.password.hidden  # the masked Bearer token field
    assert standard.password.title == "Bearer token"
    assert standard.url_schema.hidden
    assert standard.port.placeholder == "50051"
    assert standard.host.placeholder
    extra = meta.extra_fields
    assert set(extra) == set(EXTRAS) - {"bearer_token"}
    assert extra["use_ssl"]["schema"]["title"] == "Use TLS"
    assert "boolean" in extra["use_ssl"]["schema"]["type"]
    assert extra["client_cert_path"]["schema"]["title"] == "Client certificate path (mutual TLS)"
    assert all(field["description"] for field in extra.values())
    # A JSON-schema "examples" list becomes a suggestion list in the UI, not a placeholder.
    assert all("examples" not in field["schema"] for field in extra.values())
    assert "For example: /etc/ssl/remsvc-ca.pem" in extra["ca_cert_path"]["description"]


@pytest.fixture
def mocked_wtforms() -> Iterator[None]:
    """Airflow 3.1 builds the form from the hook's WTForms fields. wtforms and
    flask-appbuilder are not installed here (nor on a 3.x API server), so - like the
    API server itself does - stand-ins from HookMetaService record the arguments."""
    from airflow.api_fastapi.core_api.services.ui.connections import HookMetaService as S

    wtforms = types.ModuleType("wtforms")
    wtforms.StringField = S.MockStringField  # type: ignore[attr-defined]
    wtforms.PasswordField = S.MockPasswordField  # type: ignore[attr-defined]
    wtforms.BooleanField = S.MockBooleanField  # type: ignore[attr-defined]
    widgets = types.ModuleType("flask_appbuilder.fieldwidgets")
    widgets.BS3TextFieldWidget = S.MockAnyWidget  # type: ignore[attr-defined]
    widgets.BS3PasswordFieldWidget = S.MockAnyWidget  # type: ignore[attr-defined]
    babel = types.ModuleType("flask_babel")
    babel.lazy_gettext = lambda text: text  # type: ignore[attr-defined]
    modules = {
        "wtforms": wtforms,
        "flask_appbuilder": types.ModuleType("flask_appbuilder"),
        "flask_appbuilder.fieldwidgets": widgets,
        "flask_babel": babel,
    }
    with mock.patch.dict(sys.modules, modules):
        yield


@pytest.mark.usefixtures("mocked_wtforms")
def test_airflow_31_hook_classmethods_describe_the_same_form() -> None:
    from airflow.api_fastapi.core_api.services.ui.connections import HookMetaService
    from airflow.providers_manager import ConnectionFormWidgetInfo

    from remsvc_provider.hooks.remsvc import RemSvcHook

    widgets = RemSvcHook.get_connection_form_widgets()
    infos = {
        f"extra__remsvc__{name}": ConnectionFormWidgetInfo(
            "RemSvcHook", PACKAGE, field, name, False
        )
        for name, field in widgets.items()
    }
    from_hook = HookMetaService._convert_extra_fields(infos)["remsvc"]
    # The provider info's conn-fields, as Airflow 3.2+ hands them to the UI (the label
    # becomes the schema's title); on 3.1 they are not read, so compare the declaration.
    from_provider_info = {
        name: {**field, "schema": {**field["schema"], "title": field["label"]}}
        for name, field in form.conn_fields().items()
    }

    assert set(from_hook) == set(from_provider_info)
    for name, field in from_provider_info.items():
        for key in ("title", "type", "format", "examples"):
            assert from_hook[name]["schema"].get(key) == field["schema"].get(key), (name, key)
        assert from_hook[name]["description"] == field["description"]
    behaviour = RemSvcHook.get_ui_field_behaviour()
    info_behaviour = get_provider_info()["connection-types"][0]["ui-field-behaviour"]
    assert behaviour["hidden_fields"] == info_behaviour["hidden-fields"]
    assert behaviour["relabeling"] == info_behaviour["relabeling"]
    assert behaviour["placeholders"] == info_behaviour["placeholders"]


# -- the real airflow command line --


def test_airflow_providers_list_shows_the_provider() -> None:
    result = airflow_cli("providers", "list", "--output", "json")

    assert result.returncode == 0, result.stderr
    start = result.stdout.index("[")
    listed = {p["package_name"]: p for p in json.loads(result.stdout[start:])}
    assert listed[PACKAGE]["version"] == get_provider_info()["versions"][0]
    assert "RemSvc" in listed[PACKAGE]["description"]


def test_airflow_connections_test_makes_a_real_ping(tls_server: Any, tls_files: Any) -> None:
    from airflow import __version__ as airflow_version
    from packaging.version import Version

    if Version(airflow_version) < Version("3.2"):
        # 3.1's command reads no AIRFLOW_CONN_* variable, and storing one fails there
        # with current cryptography (MultiFernet has no is_encrypted): nothing to test.
        pytest.skip("airflow connections test on 3.1 cannot see a connection made here")
    good = airflow_cli(
        "connections",
        "test",
        "remsvc_cli",
        env_extra={"AIRFLOW_CONN_REMSVC_CLI": tls_uri(tls_server, tls_files)},
    )
    bad = airflow_cli(
        "connections",
        "test",
        "remsvc_cli",
        env_extra={"AIRFLOW_CONN_REMSVC_CLI": tls_uri(tls_server, tls_files, "wrong-token-x")},
    )

    assert good.returncode == 0, good.stdout + good.stderr
    assert "Connection success" in good.stdout
    # Before 3.3 the command exits 0 whatever the test said (docs/dag-authors.md says so).
    failed_status = 1 if Version(airflow_version) >= Version("3.3") else 0
    assert bad.returncode == failed_status
    assert "Connection failed" in bad.stdout
    assert "UNAUTHENTICATED" in bad.stdout
    for output in (good.stdout, good.stderr, bad.stdout, bad.stderr):
        assert TOKEN not in output
        assert "wrong-token-x" not in output


def test_ui_test_button_round_trip(
    monkeypatch: pytest.MonkeyPatch, tls_server: Any, tls_files: Any
) -> None:
    """What the API server does for the Test button: a transient connection from the
    form's values, exported as a URI, then ``test_connection()``."""
    from airflow.models.connection import Connection

    saved_by_form = {
        "use_ssl": True,
        "ca_cert_path": tls_files.ca_cert,
        "client_cert_path": "",
        "client_key_path": "",
        "tls_server_name": "",
        "bearer_token": TOKEN,
    }
    conn = Connection(
        conn_id="transient_remsvc",
        conn_type="remsvc",
        host="localhost",
        port=tls_server.port,
        extra=json.dumps(saved_by_form),
    )
    monkeypatch.setenv("AIRFLOW_CONN_TRANSIENT_REMSVC", conn.get_uri())

    status, message = conn.test_connection()

    assert status, message
    assert TOKEN not in message


def test_hook_is_found_from_the_connection_type(
    set_conn: Callable[[str, str], None], tls_server: Any, tls_files: Any
) -> None:
    from airflow.sdk import BaseHook

    from remsvc_provider.hooks.remsvc import RemSvcHook

    set_conn("remsvc_lookup", tls_uri(tls_server, tls_files))

    hook = BaseHook.get_hook("remsvc_lookup")

    assert isinstance(hook, RemSvcHook)
    assert hook.grpc_conn_id == "remsvc_lookup"
