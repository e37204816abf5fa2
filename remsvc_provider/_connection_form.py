"""The ``remsvc`` connection form, rendered from the one table of connection extras.

Airflow 3.2+ reads the form from the provider info (``conn-fields`` and
``ui-field-behaviour``) without importing the hook; Airflow 3.1 asks the hook's
classmethods. Both are generated here from
:data:`remsvc_core.settings.CONNECTION_EXTRAS`, which also drives the connection
parser and the CLI's options, so none of them can drift. Only the standard fields
(host, port, the hidden ones) are declared here: they are Airflow's, not RemSvc's.

What the Airflow 3.1-3.3 UIs do with it, and so why it is shaped this way:

- The bearer token is the standard Password field, relabelled: that is the one field
  every 3.x UI masks (3.1's form shows an extra with ``format: password`` as plain
  text). The ``bearer_token`` extra still works in URIs, JSON and secrets backends.
- Extra fields get no placeholder in the 3.x UIs: a JSON-schema ``examples`` list is
  turned into a suggestion list ("Start typing to see options") offering the sample
  as a value. So samples go into the help text ("For example: ..."), and only the
  standard fields (host, port) have placeholders.
- The "Extra Fields JSON" section is always shown by the 3.x UIs, whatever
  ``hidden-fields`` says; it holds the same settings as the fields above it.
"""

from __future__ import annotations

from typing import Any

from remsvc_core.connection import CONN_TYPE
from remsvc_core.settings import CONNECTION_EXTRAS, DEFAULT_PORT, ConnectionExtra

HOOK_NAME = "RemSvc gRPC"

# The secret extra is shown as the standard Password field (see above).
TOKEN = next(f for f in CONNECTION_EXTRAS if f.secret)
FORM_EXTRAS = tuple(f for f in CONNECTION_EXTRAS if not f.secret)
HIDDEN_FIELDS = ["schema", "login", "extra"]
RELABELING = {"host": "Host", "port": "Port", "password": TOKEN.label}
STANDARD_PLACEHOLDERS = {
    "host": "remsvc-host.example.com",
    "port": str(DEFAULT_PORT),
    "password": "empty when the server has no [auth] section",
    "description": "RemSvc server on remsvc-host.example.com",
}


def placeholders() -> dict[str, str]:
    """Placeholders of the standard fields (the 3.x UIs show none for extra fields;
    their samples are in the help text, see the module's docstring)."""
    return dict(STANDARD_PLACEHOLDERS)


def help_text(extra: ConnectionExtra) -> str:
    """A field's help text: its description, and its sample value when it has one."""
    if not extra.placeholder:
        return extra.description
    return f"{extra.description} For example: {extra.placeholder}"


def conn_fields() -> dict[str, Any]:
    """The ``conn-fields`` mapping of the provider info (Airflow 3.2+)."""
    fields: dict[str, Any] = {}
    for f in FORM_EXTRAS:
        schema: dict[str, Any]
        if f.kind == "boolean":
            schema = {"type": ["boolean", "null"], "default": False}
        else:
            schema = {"type": ["string", "null"]}
        fields[f.name] = {"label": f.label, "description": help_text(f), "schema": schema}
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
        BS3TextFieldWidget,
    )
    from flask_babel import lazy_gettext  # type: ignore[import-not-found]
    from wtforms import (  # type: ignore[import-untyped,import-not-found]
        BooleanField,
        StringField,
    )

    widgets: dict[str, Any] = {}
    for f in FORM_EXTRAS:
        label = lazy_gettext(f.label)
        if f.kind == "boolean":
            widgets[f.name] = BooleanField(label, description=help_text(f), default=False)
        else:
            widgets[f.name] = StringField(
                label, widget=BS3TextFieldWidget(), description=help_text(f)
            )
    return widgets


__all__ = [
    "CONN_TYPE",
    "HOOK_NAME",
    "conn_fields",
    "connection_form_widgets",
    "help_text",
    "placeholders",
    "ui_field_behaviour_hook",
    "ui_field_behaviour_provider_info",
]
