"""The ``remsvc`` connection form, rendered from the one table of connection extras.

Airflow 3.2+ reads the form from the provider info (``conn-fields`` and
``ui-field-behaviour``) without importing the hook; Airflow 3.1 asks the hook's
classmethods. Both are generated here from
:data:`remsvc_core.settings.CONNECTION_EXTRAS`, which also drives the connection
parser and the CLI's options, so none of them can drift. Only the standard fields
(host, port, the hidden ones) are declared here: they are Airflow's, not RemSvc's.
"""

from __future__ import annotations

from typing import Any

from remsvc_core.connection import CONN_TYPE
from remsvc_core.settings import CONNECTION_EXTRAS, DEFAULT_PORT

HOOK_NAME = "RemSvc gRPC"

HIDDEN_FIELDS = ["schema", "login", "password", "extra"]
RELABELING = {"host": "Host", "port": "Port"}
STANDARD_PLACEHOLDERS = {
    "host": "remsvc-host.example.com",
    "port": str(DEFAULT_PORT),
    "description": "RemSvc server on remsvc-host.example.com",
}


def placeholders() -> dict[str, str]:
    """Placeholders for standard and extra fields, keyed by unprefixed field name."""
    extra = {f.name: f.placeholder for f in CONNECTION_EXTRAS if f.placeholder}
    return {**STANDARD_PLACEHOLDERS, **extra}


def conn_fields() -> dict[str, Any]:
    """The ``conn-fields`` mapping of the provider info (Airflow 3.2+)."""
    fields: dict[str, Any] = {}
    for f in CONNECTION_EXTRAS:
        schema: dict[str, Any]
        if f.kind == "boolean":
            schema = {"type": ["boolean", "null"], "default": False}
        elif f.kind == "password":
            schema = {"type": ["string", "null"], "format": "password"}
        else:
            schema = {"type": ["string", "null"]}
        if f.placeholder:
            # JSON Schema's own way to show a sample value; ui-field-behaviour carries
            # the same text as the field's placeholder.
            schema["examples"] = [f.placeholder]
        fields[f.name] = {"label": f.label, "description": f.description, "schema": schema}
    return fields


def ui_field_behaviour_provider_info() -> dict[str, Any]:
    """The ``ui-field-behaviour`` mapping of the provider info (kebab-case keys)."""
    return {
        "hidden-fields": list(HIDDEN_FIELDS),
        "relabeling": dict(RELABELING),
        "placeholders": placeholders(),
    }


def ui_field_behaviour_hook() -> dict[str, Any]:
    """What ``RemSvcHook.get_ui_field_behaviour()`` returns (Airflow 3.1)."""
    return {
        "hidden_fields": list(HIDDEN_FIELDS),
        "relabeling": dict(RELABELING),
        "placeholders": placeholders(),
    }


def connection_form_widgets() -> dict[str, Any]:
    """WTForms fields for Airflow 3.1, which builds the form from the hook.

    Imported lazily: wtforms and flask-appbuilder are only present (or mocked by the
    API server) where the form is rendered, never needed on workers or triggerers.
    """
    from flask_appbuilder.fieldwidgets import (  # type: ignore[import-not-found]
        BS3PasswordFieldWidget,
        BS3TextFieldWidget,
    )
    from flask_babel import lazy_gettext  # type: ignore[import-not-found]
    from wtforms import (  # type: ignore[import-untyped,import-not-found]
        BooleanField,
        PasswordField,
        StringField,
    )

    widgets: dict[str, Any] = {}
    for f in CONNECTION_EXTRAS:
        label = lazy_gettext(f.label)
        if f.kind == "boolean":
            widgets[f.name] = BooleanField(label, description=f.description, default=False)
        elif f.kind == "password":
            widgets[f.name] = PasswordField(
                label, widget=BS3PasswordFieldWidget(), description=f.description
            )
        else:
            widgets[f.name] = StringField(
                label, widget=BS3TextFieldWidget(), description=f.description
            )
    return widgets


__all__ = [
    "CONN_TYPE",
    "HOOK_NAME",
    "conn_fields",
    "connection_form_widgets",
    "placeholders",
    "ui_field_behaviour_hook",
    "ui_field_behaviour_provider_info",
]
