"""Apache Airflow provider for RemSvc: run commands on remote hosts over gRPC.

Airflow finds this package through the ``apache_airflow_provider`` entry point,
which points at :func:`get_provider_info`. Importing the package is cheap: it
pulls in neither Airflow nor gRPC.
"""

from __future__ import annotations

from typing import Any

from remsvc_core import __version__
from remsvc_provider import _connection_form as form

PACKAGE_NAME = "airflow-provider-remsvc"
_INTEGRATION = "RemSvc"


def get_provider_info() -> dict[str, Any]:
    """What ``airflow providers list`` shows and how the ``remsvc`` connection form looks."""
    return {
        "package-name": PACKAGE_NAME,
        "name": "RemSvc",
        "description": "Run shell and PowerShell commands on remote hosts over RemSvc gRPC, "
        "with deferrable operators and pluggable result handlers",
        "versions": [__version__],
        "integrations": [
            {
                "integration-name": _INTEGRATION,
                "tags": ["protocol"],
            }
        ],
        "hooks": [
            {"integration-name": _INTEGRATION, "python-modules": ["remsvc_provider.hooks.remsvc"]}
        ],
        "operators": [
            {
                "integration-name": _INTEGRATION,
                "python-modules": [
                    "remsvc_provider.operators.remsvc",
                    "remsvc_provider.operators.fleet",
                ],
            }
        ],
        "triggers": [
            {
                "integration-name": _INTEGRATION,
                "python-modules": [
                    "remsvc_provider.triggers.remsvc",
                    "remsvc_provider.triggers.fleet",
                ],
            }
        ],
        "connection-types": [
            {
                "connection-type": form.CONN_TYPE,
                "hook-class-name": "remsvc_provider.hooks.remsvc.RemSvcHook",
                "hook-name": form.HOOK_NAME,
                "conn-fields": form.conn_fields(),
                "ui-field-behaviour": form.ui_field_behaviour_provider_info(),
            }
        ],
    }


__all__ = ["PACKAGE_NAME", "__version__", "get_provider_info"]
