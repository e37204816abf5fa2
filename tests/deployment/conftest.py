"""A real Airflow deployment for the tests that need one, started once and shared by them.

PostgreSQL (Debian's binaries, in a temporary directory), ``airflow db migrate``, then
the api-server, scheduler, DAG processor and two triggerers as separate processes
(see ``deploy_airflow.py``). Tests drive it through the REST API (``deployment.api``),
write DAG files into its dags folder, and run real reference servers on loopback.

Without PostgreSQL the tests skip, except under CI (``CI`` set), where they fail:
CI must prove the deployment, never quietly leave it out. When a test here fails,
the tail of every component's log is attached to its report.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from deploy_airflow import AirflowDeployment
from deploy_postgres import PostgresCluster, PostgresUnavailable, find_postgres_bin
from deploy_remsvc import connection_uri, launch_tls_server
from support.server_process import ServerProcess

_TIMINGS: list[str] = []


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if _TIMINGS:
        terminalreporter.section("remsvc deployment: timings")
        for line in _TIMINGS:
            terminalreporter.write_line(line)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    report = yield
    deployment = getattr(item, "funcargs", {}).get("deployment")
    if report.failed and isinstance(deployment, AirflowDeployment):
        report.sections.append(("Airflow deployment logs", deployment.describe()))
    return report


def _record_timing(label: str, seconds: float) -> None:
    line = f"{label}: {seconds:.1f}s"
    print(line)
    _TIMINGS.append(line)


@pytest.fixture
def timings() -> Callable[[str, float], None]:
    """``timings(label, seconds)``: print a measured duration and list it in the summary."""
    return _record_timing


def _postgres_bin() -> Path:
    """Debian's PostgreSQL binaries; without them, skip (fail under CI) with the fix."""
    try:
        return find_postgres_bin()
    except PostgresUnavailable as exc:
        reason = str(exc)  # raised below, outside the handler, so no chained traceback
    if "CI" in os.environ:
        pytest.fail(f"{reason} (CI is set: the deployment tests must run there)", pytrace=False)
    pytest.skip(reason)


class _SharedDeployment:
    """The one deployment the tests share: started by the first test that asks for it,
    stopped right after the last one (they are collected together), so it does not load
    the machine under the rest of the suite. A later test that asks again gets a new one.
    """

    def __init__(self) -> None:
        self._postgres: PostgresCluster | None = None
        self._deployment: AirflowDeployment | None = None
        self._start_error: BaseException | None = None

    def get(self) -> AirflowDeployment:
        if self._start_error is not None:  # do not pay for a failed start once per test
            raise self._start_error
        if self._deployment is None:
            bin_dir = _postgres_bin()  # skips (fails under CI) without PostgreSQL
            started = time.monotonic()
            try:
                self._postgres = PostgresCluster(bin_dir)
                self._postgres.start()
                self._deployment = AirflowDeployment(self._postgres)
                self._deployment.start()
            except BaseException as exc:
                self._start_error = exc
                if self._deployment is not None:
                    print(self._deployment.describe())
                try:
                    self.close()
                except AssertionError as leftovers:  # the start's error is the one to raise
                    print(leftovers)
                raise
            elapsed = time.monotonic() - started
            _record_timing("deployment started (PostgreSQL, migrate, 5 components)", elapsed)
        return self._deployment

    def close(self) -> None:
        """Stop the deployment, then PostgreSQL; raises if a process outlived either."""
        deployment, postgres = self._deployment, self._postgres
        self._deployment = self._postgres = None
        started = time.monotonic()
        try:
            if deployment is not None:
                deployment.close()
        finally:
            if postgres is not None:
                postgres.stop()
        if deployment is not None:
            _record_timing("deployment stopped, nothing left running", time.monotonic() - started)


_SHARED = _SharedDeployment()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_teardown(item: pytest.Item, nextitem: pytest.Item | None) -> Any:
    result = yield  # the test's own fixtures first (its servers, its connections)
    if nextitem is None or "deployment" not in getattr(nextitem, "fixturenames", ()):
        _SHARED.close()  # a leftover process fails this test's teardown
    return result


def pytest_sessionfinish(session: pytest.Session) -> None:
    # Interrupted runs (-x, Ctrl-C) skip the teardown above; nothing may outlive pytest.
    try:
        _SHARED.close()
    except AssertionError as leftovers:
        print(f"\n{leftovers}")
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


@pytest.fixture
def deployment() -> AirflowDeployment:
    """The running deployment: ``.api`` (REST client), ``.deploy_dag()``, ``.triggerers``..."""
    return _SHARED.get()


@pytest.fixture
def remsvc_server(tmp_path: Path, tls_files: Any) -> Iterator[ServerProcess]:
    """A reference server as production runs it: TLS and a bearer token, on 127.0.0.1."""
    server = launch_tls_server(tmp_path / "remsvc-server", tls_files)
    try:
        yield server
    finally:
        server.close()


@pytest.fixture
def remsvc_conn_id(
    request: pytest.FixtureRequest,
    deployment: AirflowDeployment,
    remsvc_server: ServerProcess,
    tls_files: Any,
) -> str:
    """A connection to ``remsvc_server``, added with ``airflow connections add``."""
    conn_id = f"remsvc_{request.node.name.removeprefix('test_')[:40]}"
    deployment.add_connection(conn_id, connection_uri(remsvc_server, tls_files))
    return conn_id
