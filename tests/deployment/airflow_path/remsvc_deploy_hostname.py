"""The hostname an Airflow process of the test deployment reports (``[core] hostname_callable``).

Imported by the Airflow processes themselves, not by the tests: the harness puts this
directory on their ``PYTHONPATH``. Each process gets its name from its environment, so
two triggerers on one machine can be told apart in the ``job`` table and the API.
"""

from __future__ import annotations

import os

VARIABLE = "REMSVC_DEPLOY_HOSTNAME"


def from_environment() -> str:
    try:
        return os.environ[VARIABLE]
    except KeyError:
        raise RuntimeError(
            f"{VARIABLE} is not set; the test deployment sets it for every Airflow process "
            "it starts (run this process through tests/deployment's harness)"
        ) from None
