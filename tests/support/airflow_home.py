"""One throw-away AIRFLOW_HOME per test session, shared by every suite that runs Airflow.

Airflow reads its configuration when it is first imported, so a conftest calls
:func:`prepare_airflow_home` at import time, before any test module imports the
provider (and with it Airflow). Whichever suite's conftest loads first creates the
home; the others find it through ``AIRFLOW_HOME`` and reuse it.
"""

from __future__ import annotations

import atexit
import os
import shutil
import sys
import tempfile
from pathlib import Path

HOME_PREFIX = "remsvc-airflow-"


def prepare_airflow_home(suite: str) -> Path:
    """Point Airflow at a fresh home with a sqlite DB, or return the session's one.

    ``suite`` names the caller in the error raised when Airflow was imported too early.
    """
    home = os.environ.get("AIRFLOW_HOME", "")
    if os.path.basename(home).startswith(HOME_PREFIX) and os.path.isdir(home):
        return Path(home)  # already set up by another suite's conftest in this session
    if "airflow.settings" in sys.modules:  # pragma: no cover - guards the session setup
        raise RuntimeError(
            f"Airflow was imported before {suite}'s conftest could point it at a throw-away "
            f"AIRFLOW_HOME; run {suite} in a pytest process of its own"
        )
    root = Path(tempfile.mkdtemp(prefix=HOME_PREFIX))
    (root / "dags").mkdir()
    os.environ.update(
        {
            "AIRFLOW_HOME": str(root),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__CORE__DAGS_FOLDER": str(root / "dags"),
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{root / 'airflow.db'}",
            "AIRFLOW__CORE__TEST_CONNECTION": "Enabled",
            # RemSvcOperator's deferrable follows this (Airflow's default is False); most
            # tests are about the triggerer path, and the operator tests check both.
            "AIRFLOW__OPERATORS__DEFAULT_DEFERRABLE": "True",
        }
    )
    atexit.register(shutil.rmtree, root, ignore_errors=True)
    return root
