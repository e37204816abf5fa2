"""The reliability suite's fixtures, its Airflow setup and its end-of-session summary.

Airflow reads its configuration when first imported, so a throw-away AIRFLOW_HOME is
set up here at import time, unless ``tests/provider/conftest.py`` (which does the
same) was loaded first in this session; then its home is reused. Either way the
metadata database is created by the ``airflow_db`` fixture from whatever Airflow
ended up configured with.
"""

from __future__ import annotations

import logging
import os
import secrets
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from support.airflow_home import prepare_airflow_home

prepare_airflow_home("tests/reliability")

from reliability_figures import FIGURES, Figures  # noqa: E402
from support.server_process import ServerProcess, render_ini, sections_from_overrides  # noqa: E402

# -- the summary -------------------------------------------------------------------


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if FIGURES.empty:
        return
    terminalreporter.section("remsvc reliability: what was tried")
    for line in FIGURES.lines():
        terminalreporter.write_line(line)


@pytest.fixture
def figures() -> Figures:
    return FIGURES


@pytest.fixture(autouse=True, scope="module")
def _server_log_level_restored() -> Iterator[None]:
    """Servers started here set the process-wide "remsvc.server" logger level (app.py
    does, from their config, and never puts it back); later tests must not inherit it."""
    logger = logging.getLogger("remsvc.server")
    level = logger.level
    yield
    logger.setLevel(level)


# -- small things every module uses --------------------------------------------------


@pytest.fixture
def marker() -> str:
    """A number no other process on this machine has in its command line.

    Commands use it as the fraction of a ``sleep`` (``sleep 300.<marker>``), which
    coreutils accepts, so /proc can tell our processes from anyone else's.
    """
    return f"{secrets.randbelow(10**9):09d}7"


@pytest.fixture
def scratch(tmp_path: Path) -> Path:
    """A directory commands append their execution records to."""
    directory = tmp_path / "scratch"
    directory.mkdir()
    directory.chmod(0o777)
    return directory


# -- servers ---------------------------------------------------------------------------


def _server_command() -> list[str]:
    script = Path(sys.executable).with_name("remsvc-server")
    return [str(script)] if script.exists() else [sys.executable, "-m", "remsvc_core.server"]


@pytest.fixture
def server_on_port(tmp_path: Path) -> Iterator[Callable[..., ServerProcess]]:
    """``server_on_port(port, **ServerConfig overrides)``: a server subprocess on a fixed port.

    ``server_process`` always asks for an ephemeral port; a restart must come back on
    the same one, so this launcher passes ``--port`` itself. Waits (bounded) until the
    server listens; every server is stopped at teardown.
    """
    started: list[ServerProcess] = []

    def start(port: int, **overrides: Any) -> ServerProcess:
        workdir = tmp_path / f"fixed-{len(started)}"
        workdir.mkdir()
        config = workdir / "server.ini"
        config.write_text(render_ini(sections_from_overrides(overrides)), encoding="utf-8")
        port_file = workdir / "port"
        log_path = workdir / "server.log"
        log_handle = open(log_path, "wb")  # noqa: SIM115 - closed by ServerProcess.close
        popen = subprocess.Popen(
            [
                *_server_command(),
                "--config",
                str(config),
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                "--port-file",
                str(port_file),
            ],
            stdin=subprocess.DEVNULL,
            stdout=log_handle,
            stderr=subprocess.STDOUT,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
            cwd=workdir,
        )
        process = ServerProcess(popen, "127.0.0.1", port, config, log_path, log_handle)
        started.append(process)
        deadline = time.monotonic() + 30.0
        while not port_file.exists() and popen.poll() is None and time.monotonic() < deadline:
            time.sleep(0.02)
        if not port_file.exists():
            process.close()
            raise RuntimeError(f"server on port {port} did not start:\n{process.log_text()}")
        return process

    try:
        yield start
    finally:
        for process in started:
            process.close()


# -- Airflow -----------------------------------------------------------------------------


@pytest.fixture(scope="session")
def airflow_db() -> Path:
    """Create the metadata database (once) and return the sqlite file's path."""
    from airflow import settings
    from airflow.dag_processing.bundles.manager import DagBundlesManager
    from airflow.utils import db

    db.initdb()
    DagBundlesManager().sync_bundles_to_db()
    url = str(settings.engine.url)
    assert url.startswith("sqlite:///"), f"the reliability suite expects sqlite, got {url}"
    return Path(url.removeprefix("sqlite:///"))


@pytest.fixture
def set_conn(monkeypatch: pytest.MonkeyPatch) -> Callable[[str, str], None]:
    """``set_conn("remsvc_x", uri)``: an AIRFLOW_CONN_* variable for one test."""

    def set_(conn_id: str, value: str) -> None:
        monkeypatch.setenv(f"AIRFLOW_CONN_{conn_id.upper()}", value)

    return set_
