"""An Airflow deployment as separate processes over a PostgreSQL database.

``airflow db migrate`` once, then the api-server (127.0.0.1, ephemeral port), the
scheduler (LocalExecutor), the DAG processor and two triggerers, all sharing one
AIRFLOW_HOME in a temporary directory whose ``dags`` folder the tests write into.
Intervals are short so that a test sees a new DAG within seconds and a killed
triggerer's triggers move to the other within about ``TRIGGERER_HEALTH_THRESHOLD_S``.

Each triggerer reports its own hostname (``[core] hostname_callable`` reads it from the
environment), so the ``job`` table and the API say which one holds a trigger. The
hostnames are loopback addresses: they resolve without DNS, and when the api-server
tries to fetch served logs from them it is refused at once. No component serves logs
(Airflow's log server listens on every interface); the api-server reads the shared
log folder instead.
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from cryptography.fernet import Fernet
from deploy_api import AirflowApi
from deploy_postgres import PostgresCluster
from deploy_process import (
    MARKER_VARIABLE,
    STOP_GRACE_S,
    ManagedProcess,
    free_loopback_port,
    log_tail,
    marked_processes,
)

__all__ = ["AirflowDeployment", "DeploymentError", "TriggerRow"]

AIRFLOW_PATH = Path(__file__).with_name("airflow_path")
HOSTNAME_VARIABLE = "REMSVC_DEPLOY_HOSTNAME"
COMPONENT_HOSTNAME = "127.0.0.1"
FIRST_TRIGGERER_ADDRESS = ipaddress.IPv4Address("127.0.0.11")
TRIGGERER_HEARTBEAT_S = 1
# A killed triggerer's triggers are taken over once its last heartbeat is this old.
# Small enough for a failover test; large enough that a healthy triggerer never looks
# dead (with a 1 s heartrate, an idle one was seen 4 s apart, and this machine is shared).
TRIGGERER_HEALTH_THRESHOLD_S = 15
MIGRATE_TIMEOUT_S = 300.0
CLI_TIMEOUT_S = 120.0
READY_TIMEOUT_S = 180.0
DAG_PARSE_TIMEOUT_S = 90.0


class DeploymentError(RuntimeError):
    """A component of the deployment failed to start or died."""


@dataclass(frozen=True)
class TriggerRow:
    """One row of the ``trigger`` table, with the hostname of the triggerer holding it."""

    id: int
    classpath: str
    triggerer_id: int | None
    triggerer_hostname: str | None


def _parent_environment() -> dict[str, str]:
    """The test process's environment without what other suites set for themselves:
    Airflow's configuration (they point AIRFLOW_HOME at an in-process sqlite home), the
    gRPC trust store the provider suite substitutes, and pytest's own variables."""
    dropped = ("AIRFLOW", "_AIRFLOW", "PYTEST_", "PYTHONPATH", "GRPC_DEFAULT_SSL_ROOTS_FILE_PATH")
    return {key: value for key, value in os.environ.items() if not key.startswith(dropped)}


class AirflowDeployment:
    """Start with :meth:`start`, stop with :meth:`close` (which asserts nothing is left)."""

    def __init__(self, database: PostgresCluster) -> None:
        self.database = database
        self.id = secrets.token_hex(8)
        self.root = Path(tempfile.mkdtemp(prefix="remsvc-deploy-"))
        self.home = self.root / "airflow-home"
        self.dags_folder = self.home / "dags"
        self.process_logs = self.root / "process-logs"
        for directory in (self.dags_folder, self.process_logs):
            directory.mkdir(parents=True)
        self.api_port = free_loopback_port()
        self.processes: dict[str, ManagedProcess] = {}
        self.triggerers: dict[str, ManagedProcess] = {}  # by hostname
        self._next_triggerer = FIRST_TRIGGERER_ADDRESS
        self._config = self._configuration()
        self.api = AirflowApi(self.base_url, check=self.check_processes)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.api_port}"

    def _configuration(self) -> dict[str, str]:
        # Closed ports: nothing serves logs, so a fetch of "served" logs is refused at once.
        closed_log_port = str(free_loopback_port())
        settings = {
            "CORE__DAGS_FOLDER": str(self.dags_folder),
            "CORE__LOAD_EXAMPLES": "False",
            "CORE__EXECUTOR": "LocalExecutor",
            "CORE__PARALLELISM": "4",
            "CORE__FERNET_KEY": Fernet.generate_key().decode(),
            "CORE__HOSTNAME_CALLABLE": "remsvc_deploy_hostname.from_environment",
            "CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS": "True",
            "CORE__EXECUTION_API_SERVER_URL": f"{self.base_url}/execution/",
            # The connection form's Test button (tests/deployment, driven in a browser).
            "CORE__TEST_CONNECTION": "Enabled",
            "DATABASE__SQL_ALCHEMY_CONN": self.database.sqlalchemy_url,
            "API__HOST": "127.0.0.1",
            "API__PORT": str(self.api_port),
            "API__WORKERS": "1",
            "API__BASE_URL": self.base_url,
            "API__SECRET_KEY": secrets.token_hex(16),
            "API_AUTH__JWT_SECRET": secrets.token_hex(32),
            "LOGGING__WORKER_LOG_SERVER_PORT": closed_log_port,
            "LOGGING__TRIGGER_LOG_SERVER_PORT": closed_log_port,
            "SCHEDULER__SCHEDULER_IDLE_SLEEP_TIME": "0.5",
            "DAG_PROCESSOR__REFRESH_INTERVAL": "2",
            "DAG_PROCESSOR__BUNDLE_REFRESH_CHECK_INTERVAL": "1",
            "DAG_PROCESSOR__MIN_FILE_PROCESS_INTERVAL": "30",
            "DAG_PROCESSOR__PARSING_PROCESSES": "1",
            "DAG_PROCESSOR__PRINT_STATS_INTERVAL": "0",
            "TRIGGERER__JOB_HEARTBEAT_SEC": str(TRIGGERER_HEARTBEAT_S),
            "TRIGGERER__TRIGGERER_HEALTH_CHECK_THRESHOLD": str(TRIGGERER_HEALTH_THRESHOLD_S),
            # RemSvcOperator's deferrable follows this; these tests are about triggerers.
            "OPERATORS__DEFAULT_DEFERRABLE": "True",
        }
        environment = _parent_environment()
        environment.update({f"AIRFLOW__{key}": value for key, value in settings.items()})
        environment.update(
            {
                "AIRFLOW_HOME": str(self.home),
                "PYTHONPATH": str(AIRFLOW_PATH),
                "PYTHONUNBUFFERED": "1",
                MARKER_VARIABLE: self.id,
            }
        )
        return environment

    def environment(self, hostname: str = COMPONENT_HOSTNAME) -> dict[str, str]:
        """What every Airflow process of this deployment runs with."""
        return {**self._config, HOSTNAME_VARIABLE: hostname}

    # -- one-shot commands --

    def airflow_cli(self, *args: str, timeout: float = CLI_TIMEOUT_S, log_name: str) -> str:
        """Run ``airflow <args>`` to completion; its output, or an error that shows it."""
        log_path = self.process_logs / f"{log_name}.log"
        with open(log_path, "ab") as log:
            try:
                done = subprocess.run(
                    [sys.executable, "-m", "airflow", *args],
                    env=self.environment(),
                    cwd=self.root,
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    timeout=timeout,
                    check=False,
                )
            except subprocess.TimeoutExpired as exc:
                raise DeploymentError(
                    f"airflow {args[0]} did not finish within {timeout:.0f}s\n{log_tail(log_path)}"
                ) from exc
        if done.returncode != 0:
            raise DeploymentError(
                f"airflow {' '.join(args[:2])} exited {done.returncode}:\n{log_tail(log_path)}"
            )
        return log_path.read_text(encoding="utf-8", errors="replace")

    def add_connection(self, conn_id: str, uri: str) -> None:
        """Store a connection in the metadata database with ``airflow connections add``."""
        self.airflow_cli("connections", "add", conn_id, "--conn-uri", uri, log_name="connections")

    def add_connections(self, uris: Mapping[str, str]) -> None:
        """Store many connections at once (``airflow connections import``): one CLI run
        instead of one per connection, for fleets of hundreds of hosts."""
        path = self.root / f"connections-{secrets.token_hex(4)}.json"
        path.write_text(json.dumps(dict(uris)), encoding="utf-8")
        try:
            self.airflow_cli("connections", "import", str(path), log_name="connections")
        finally:
            path.unlink()

    # -- long-running components --

    def _start(self, name: str, *args: str, hostname: str = COMPONENT_HOSTNAME) -> ManagedProcess:
        process = ManagedProcess.start(
            name,
            [sys.executable, "-m", "airflow", *args],
            env=self.environment(hostname),
            log_path=self.process_logs / f"{name}.log",
            cwd=self.root,
        )
        self.processes[name] = process
        return process

    def start(self) -> AirflowDeployment:
        """Migrate the database, start every component, and wait until they are ready."""
        self.airflow_cli("db", "migrate", timeout=MIGRATE_TIMEOUT_S, log_name="db-migrate")
        self._start("api-server", "api-server", "--host", "127.0.0.1", "--port", str(self.api_port))
        self._start("scheduler", "scheduler", "--skip-serve-logs")
        self._start("dag-processor", "dag-processor")
        first, second = self.start_triggerer(), self.start_triggerer()
        self.wait_ready(READY_TIMEOUT_S, triggerers=(first, second))
        return self

    def start_triggerer(self) -> str:
        """Start one more triggerer (not waiting for it); returns its hostname."""
        hostname = str(self._next_triggerer)
        self._next_triggerer += 1
        self.triggerers[hostname] = self._start(
            f"triggerer-{hostname}", "triggerer", "--skip-serve-logs", hostname=hostname
        )
        return hostname

    def kill_triggerer(self, hostname: str) -> None:
        """SIGKILL a triggerer and every process it forked, as when its host is lost."""
        process = self.triggerers.pop(hostname)
        del self.processes[process.name]
        process.kill()
        if process.group_alive():
            raise DeploymentError(f"triggerer {hostname} survived SIGKILL:\n{process.tail()}")

    def wait_ready(self, timeout: float, *, triggerers: tuple[str, ...] = ()) -> None:
        """Wait until the API answers, every component heartbeats, and ``triggerers`` live."""
        deadline = time.monotonic() + timeout
        last: object = "no answer yet"
        while time.monotonic() < deadline:
            self.check_processes()
            try:
                health = self.api.health()
            except Exception as exc:  # not listening yet
                last = exc
            else:
                last = health
                components = ("metadatabase", "scheduler", "triggerer", "dag_processor")
                if all((health.get(c) or {}).get("status") == "healthy" for c in components):
                    remaining = max(1.0, deadline - time.monotonic())
                    self.api.wait_for_alive_triggerers(triggerers, remaining)
                    return
            time.sleep(0.5)
        raise DeploymentError(
            f"the deployment was not ready within {timeout:.0f}s; last health: {last!r}\n"
            + self.describe()
        )

    def check_processes(self) -> None:
        """Raise :class:`DeploymentError` (with its log) if a component has exited."""
        for name, process in self.processes.items():
            if not process.running:
                raise DeploymentError(
                    f"{name} exited with {process.popen.returncode}\n{process.tail()}"
                )

    # -- DAGs and the database --

    def write_dag(self, filename: str, source: str) -> Path:
        """Put a DAG file in the dags folder (atomically, so it is never parsed half-written)."""
        path = self.dags_folder / filename
        partial = path.with_suffix(".partial")
        partial.write_text(source, encoding="utf-8")
        partial.replace(path)
        return path

    def deploy_dag(self, dag_id: str, source: str, timeout: float = DAG_PARSE_TIMEOUT_S) -> None:
        """Write ``source`` as ``<dag_id>.py``, wait until it is parsed, and unpause it."""
        filename = f"{dag_id}.py"
        self.write_dag(filename, source)
        self.api.wait_for_dag(dag_id, filename, timeout)
        self.api.unpause(dag_id)

    def triggers(self) -> list[TriggerRow]:
        """Every trigger and the triggerer holding it (the REST API has no trigger list)."""
        rows = self.database.query(
            "SELECT t.id, t.classpath, t.triggerer_id, j.hostname "
            "FROM trigger t LEFT JOIN job j ON j.id = t.triggerer_id ORDER BY t.id"
        )
        return [TriggerRow(*row) for row in rows]

    def log_texts(self) -> Mapping[str, str]:
        """Every log this deployment wrote (process logs and task logs), by path."""
        texts: dict[str, str] = {}
        for folder in (self.process_logs, self.home / "logs"):
            for path in sorted(folder.rglob("*")):
                if path.is_file():
                    texts[str(path)] = path.read_text(encoding="utf-8", errors="replace")
        return texts

    def describe(self) -> str:
        """The tail of every component's log, for a failure report."""
        parts = [f"Airflow deployment {self.id} at {self.base_url}, home {self.home}"]
        for path in sorted(self.process_logs.glob("*.log")):
            parts.append(f"--- {path.name} ---\n{log_tail(path)}")
        parts.append(f"--- postgres ---\n{self.database.describe()}")
        return "\n".join(parts)

    # -- teardown --

    def close(self) -> None:
        """Stop every component (SIGTERM, then SIGKILL), then assert none is left behind."""
        self.api.close()
        # All at once first, so their grace periods overlap.
        for process in self.processes.values():
            process.signal_group(signal.SIGTERM)
        killed = [name for name, process in self.processes.items() if process.stop()]
        if killed:
            # Not a failure (the brief allows SIGKILL after the grace), but worth seeing.
            print(f"needed SIGKILL after {STOP_GRACE_S:.0f}s of SIGTERM: {', '.join(killed)}")
        leftovers = marked_processes(self.id)
        for pid in leftovers:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        if leftovers:
            raise AssertionError(
                "processes of the deployment outlived its teardown (now killed): "
                + "; ".join(f"{pid}: {cmd}" for pid, cmd in leftovers.items())
            )
        shutil.rmtree(self.root, ignore_errors=True)
