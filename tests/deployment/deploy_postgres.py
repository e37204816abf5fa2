"""A throw-away PostgreSQL cluster from Debian's ``postgresql`` package.

The cluster lives in a fresh directory under the system temp dir (pytest's own temp
dirs are private to root, and the server cannot run as root), listens on 127.0.0.1
and an ephemeral port plus a unix socket in that directory, and is tuned for tests
(no fsync: a crash loses nothing a test needs). As root, every PostgreSQL binary runs
as the unprivileged ``postgres`` user the Debian package creates.
"""

from __future__ import annotations

import os
import pwd
import re
import secrets
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from deploy_process import MARKER_VARIABLE, free_loopback_port, log_tail, marked_processes

__all__ = ["PostgresCluster", "PostgresUnavailable", "find_postgres_bin"]

BIN_GLOB = "/usr/lib/postgresql/*/bin"
INSTALL_FIX = "apt-get install -y --no-install-recommends postgresql"
START_TIMEOUT_S = 60
STOP_TIMEOUT_S = 30
SERVICE_USER = "postgres"
# Test settings: fast and small. Durability is not needed by a cluster that lives
# for one test session.
SERVER_SETTINGS = {
    "fsync": "off",
    "synchronous_commit": "off",
    "full_page_writes": "off",
    "shared_buffers": "64MB",
    "max_connections": "200",
}


class PostgresUnavailable(RuntimeError):
    """Debian's PostgreSQL server, or the user to run it as, is not on this machine."""


def _version_key(path: Path) -> tuple[int, ...]:
    return tuple(int(part) for part in re.findall(r"\d+", path.parent.name))


def find_postgres_bin() -> Path:
    """The newest ``/usr/lib/postgresql/<version>/bin`` holding initdb, pg_ctl and postgres."""
    candidates = sorted(
        (
            path
            for path in Path("/").glob(BIN_GLOB.lstrip("/"))
            if all((path / tool).is_file() for tool in ("initdb", "pg_ctl", "postgres"))
        ),
        key=_version_key,
    )
    if not candidates:
        raise PostgresUnavailable(
            f"PostgreSQL's server binaries (initdb, pg_ctl, postgres) are not under {BIN_GLOB}; "
            f"install Debian's package: {INSTALL_FIX}"
        )
    if os.geteuid() == 0:
        try:
            pwd.getpwnam(SERVICE_USER)
        except KeyError:
            raise PostgresUnavailable(
                f"PostgreSQL refuses to run as root and there is no {SERVICE_USER!r} user to run "
                f"it as; Debian's package creates it: {INSTALL_FIX}"
            ) from None
    return candidates[-1]


@dataclass
class PostgresCluster:
    """One cluster with one database and one login role for Airflow.

    Use :meth:`start` and :meth:`stop` (or the instance as a context manager).
    """

    bin_dir: Path
    database: str = "airflow"
    user: str = "airflow"
    password: str = field(default_factory=lambda: secrets.token_hex(12))
    root: Path = field(init=False)
    port: int = field(init=False, default=0)

    def __post_init__(self) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="remsvc-pg-"))
        self._env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "LANG": "C.UTF-8",
            "LC_ALL": "C.UTF-8",
            MARKER_VARIABLE: f"pg-{self.root.name}",
        }
        self._prefix: list[str] = []
        if os.geteuid() == 0:
            account = pwd.getpwnam(SERVICE_USER)
            os.chown(self.root, account.pw_uid, account.pw_gid)
            self._prefix = ["runuser", "-u", SERVICE_USER, "--"]

    # -- where things are --

    @property
    def data_dir(self) -> Path:
        return self.root / "data"

    @property
    def socket_dir(self) -> Path:
        return self.root

    @property
    def log_path(self) -> Path:
        return self.root / "server.log"

    @property
    def marker(self) -> str:
        return self._env[MARKER_VARIABLE]

    @property
    def sqlalchemy_url(self) -> str:
        """The URL Airflow connects with: TCP on loopback, password authentication."""
        return (
            f"postgresql+psycopg2://{self.user}:{self.password}@127.0.0.1:{self.port}/"
            f"{self.database}"
        )

    # -- lifecycle --

    def start(self) -> PostgresCluster:
        self._run(
            [
                str(self.bin_dir / "initdb"),
                "--pgdata",
                str(self.data_dir),
                "--username",
                SERVICE_USER,
                "--encoding",
                "UTF8",
                "--locale",
                "C.UTF-8",
                # The unix socket (in a directory only this cluster uses) is trusted;
                # TCP needs the password, as a real deployment would.
                "--auth-local",
                "trust",
                "--auth-host",
                "scram-sha-256",
                "--no-sync",
            ],
            "initdb",
        )
        self.port = free_loopback_port()
        options = [
            "-c listen_addresses=127.0.0.1",
            f"-c port={self.port}",
            f"-c unix_socket_directories={self.socket_dir}",
            *(f"-c {key}={value}" for key, value in SERVER_SETTINGS.items()),
        ]
        self._run(
            [
                str(self.bin_dir / "pg_ctl"),
                "--pgdata",
                str(self.data_dir),
                "--log",
                str(self.log_path),
                "--options",
                " ".join(options),
                "--wait",
                "--timeout",
                str(START_TIMEOUT_S),
                "start",
            ],
            "pg_ctl start",
            timeout=START_TIMEOUT_S + 10,
        )
        self._create_airflow_database()
        return self

    def stop(self) -> None:
        """Fast shutdown (running transactions are rolled back), then remove the files."""
        if (self.data_dir / "postmaster.pid").exists():
            try:
                self._run(
                    [
                        str(self.bin_dir / "pg_ctl"),
                        "--pgdata",
                        str(self.data_dir),
                        "--mode",
                        "fast",
                        "--wait",
                        "--timeout",
                        str(STOP_TIMEOUT_S),
                        "stop",
                    ],
                    "pg_ctl stop",
                    timeout=STOP_TIMEOUT_S + 10,
                )
            except RuntimeError:
                self._kill_postmaster()
                raise
        # The postmaster waits for its backends before it exits, so it is the one to check.
        left = marked_processes(self.marker)
        if left:
            self._kill_postmaster()
            raise AssertionError(f"PostgreSQL outlived pg_ctl stop (now killed): {left}")
        shutil.rmtree(self.root, ignore_errors=True)

    def __enter__(self) -> PostgresCluster:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    # -- talking to it --

    def connect(self, *, as_superuser: bool = False, database: str | None = None) -> Any:
        """A psycopg2 connection (autocommit): Airflow's role over TCP, or the superuser
        over the cluster's own unix socket."""
        import psycopg2

        if as_superuser:
            connection = psycopg2.connect(
                host=str(self.socket_dir),
                port=self.port,
                user=SERVICE_USER,
                dbname=database or "postgres",
            )
        else:
            connection = psycopg2.connect(
                host="127.0.0.1",
                port=self.port,
                user=self.user,
                password=self.password,
                dbname=database or self.database,
            )
        connection.autocommit = True
        return connection

    def query(
        self, sql: str, params: Sequence[Any] | Mapping[str, Any] = ()
    ) -> list[tuple[Any, ...]]:
        """Rows of one read-only query against Airflow's database."""
        connection = self.connect()
        try:
            with connection.cursor() as cursor:
                cursor.execute(sql, params)
                return list(cursor.fetchall())
        finally:
            connection.close()

    def describe(self) -> str:
        where = f"PostgreSQL on 127.0.0.1:{self.port} (data {self.data_dir})"
        return f"{where}\n{log_tail(self.log_path)}"

    # -- internals --

    def _create_airflow_database(self) -> None:
        from psycopg2 import sql

        connection = self.connect(as_superuser=True)
        try:
            with connection.cursor() as cursor:
                cursor.execute(
                    sql.SQL("CREATE ROLE {} LOGIN PASSWORD %s").format(sql.Identifier(self.user)),
                    (self.password,),
                )
                cursor.execute(
                    sql.SQL("CREATE DATABASE {} OWNER {}").format(
                        sql.Identifier(self.database), sql.Identifier(self.user)
                    )
                )
        finally:
            connection.close()

    def _run(self, argv: list[str], what: str, timeout: float = 120.0) -> None:
        try:
            done = subprocess.run(
                [*self._prefix, *argv],
                env=self._env,
                cwd=self.root,
                stdin=subprocess.DEVNULL,
                capture_output=True,
                timeout=timeout,
                check=False,
            )
        except subprocess.TimeoutExpired as exc:
            raise RuntimeError(
                f"PostgreSQL {what} did not finish within {timeout:.0f}s\n"
                f"--- server log ---\n{log_tail(self.log_path)}"
            ) from exc
        if done.returncode != 0:
            output = (done.stdout + done.stderr).decode(errors="replace")
            raise RuntimeError(
                f"PostgreSQL {what} failed with exit code {done.returncode}:\n{output}\n"
                f"--- server log ---\n{log_tail(self.log_path)}"
            )

    def _kill_postmaster(self) -> None:
        """Last resort when pg_ctl could not stop the server: SIGKILL the postmaster."""
        try:
            pid = int((self.data_dir / "postmaster.pid").read_text().split()[0])
        except (FileNotFoundError, ValueError, IndexError):
            return
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + STOP_TIMEOUT_S
        while time.monotonic() < deadline and Path(f"/proc/{pid}").exists():
            time.sleep(0.1)
