"""A small client for the Airflow REST API (v2), as the tests drive a deployment.

Only what the deployment tests use: DAGs (parsed? unpause), runs (trigger, wait),
task instances (state, who holds the trigger, mark failed or success), logs and XCom.
The token comes from ``/auth/token`` (the simple auth manager with every user an admin).
Every wait is bounded, polls at a fixed pace, and on timeout says what it saw last.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Collection, Mapping
from typing import Any
from urllib.parse import quote

import httpx

__all__ = ["FINISHED_TASK_STATES", "AirflowApi", "ApiWaitError"]

POLL_S = 0.5
REQUEST_TIMEOUT_S = 30.0
FINISHED_TASK_STATES = frozenset(
    {"success", "failed", "skipped", "upstream_failed", "removed", "up_for_retry"}
)
FINISHED_RUN_STATES = frozenset({"success", "failed"})


class ApiWaitError(AssertionError):
    """A bounded wait on the deployment ended without what it waited for."""


def _segment(value: str) -> str:
    return quote(value, safe="")


class AirflowApi:
    """Talk to one api-server. ``check`` is called while waiting and raises if the
    deployment itself broke (a process died), so a wait fails at once with the cause."""

    def __init__(self, base_url: str, check: Callable[[], None] = lambda: None) -> None:
        self.base_url = base_url.rstrip("/")
        self._check = check
        self._client = httpx.Client(base_url=self.base_url, timeout=REQUEST_TIMEOUT_S)
        self._token: str | None = None

    def close(self) -> None:
        self._client.close()

    # -- plumbing --

    def token(self) -> str:
        if self._token is None:
            response = self._client.get("/auth/token")
            response.raise_for_status()
            self._token = str(response.json()["access_token"])
        return self._token

    def request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        """One call to ``/api/v2{path}``; raises with the answer's body on an HTTP error."""
        headers = {"Authorization": f"Bearer {self.token()}", **kwargs.pop("headers", {})}
        response = self._client.request(method, f"/api/v2{path}", headers=headers, **kwargs)
        if response.is_error:
            raise AssertionError(
                f"{method} /api/v2{path} answered {response.status_code}: {response.text[:2000]}"
            )
        return response

    def get(self, path: str, **params: Any) -> Any:
        return self.request("GET", path, params=params).json()

    def _wait(self, what: str, probe: Callable[[], tuple[bool, Any]], timeout: float) -> Any:
        """Poll ``probe`` (returning ``(done, value)``) until done; return the value."""
        deadline = time.monotonic() + timeout
        last: Any = None
        while True:
            self._check()
            done, last = probe()
            if done:
                return last
            if time.monotonic() >= deadline:
                raise ApiWaitError(f"waited {timeout:.0f}s for {what}; last seen: {last!r}")
            time.sleep(POLL_S)

    # -- health and components --

    def health(self) -> dict[str, Any]:
        response = self._client.get("/api/v2/monitor/health")
        response.raise_for_status()
        result: dict[str, Any] = response.json()
        return result

    def triggerer_jobs(self, *, alive_only: bool = True) -> list[dict[str, Any]]:
        """Triggerer jobs (newest heartbeat first), with their ``hostname``."""
        params: dict[str, Any] = {"job_type": "TriggererJob", "limit": 100}
        if alive_only:
            params["is_alive"] = True
        jobs: list[dict[str, Any]] = self.get("/jobs", **params)["jobs"]
        return jobs

    def wait_for_alive_triggerers(self, hostnames: Collection[str], timeout: float) -> None:
        wanted = set(hostnames)

        def probe() -> tuple[bool, Any]:
            alive = {job["hostname"] for job in self.triggerer_jobs()}
            return wanted <= alive, sorted(alive)

        self._wait(f"triggerers {sorted(wanted)} to heartbeat", probe, timeout)

    # -- DAGs and runs --

    def import_errors(self) -> list[dict[str, Any]]:
        errors: list[dict[str, Any]] = self.get("/importErrors", limit=100)["import_errors"]
        return errors

    def wait_for_dag(self, dag_id: str, filename: str, timeout: float) -> dict[str, Any]:
        """Wait until the DAG processor has parsed ``dag_id``; an import error of its file
        (``filename``) fails the wait at once with the error text."""

        def probe() -> tuple[bool, Any]:
            for error in self.import_errors():
                if str(error.get("filename", "")).endswith(filename):
                    raise AssertionError(f"{filename} failed to import:\n{error['stack_trace']}")
            response = self._client.get(
                f"/api/v2/dags/{_segment(dag_id)}",
                headers={"Authorization": f"Bearer {self.token()}"},
            )
            return response.status_code == 200, response.json()

        dag: dict[str, Any] = self._wait(f"DAG {dag_id} to be parsed", probe, timeout)
        return dag

    def unpause(self, dag_id: str) -> None:
        self.request("PATCH", f"/dags/{_segment(dag_id)}", json={"is_paused": False})

    def trigger(self, dag_id: str, conf: Mapping[str, Any] | None = None) -> str:
        """Start a run now; returns its run id."""
        body = {"logical_date": None, "conf": dict(conf or {})}
        run = self.request("POST", f"/dags/{_segment(dag_id)}/dagRuns", json=body).json()
        return str(run["dag_run_id"])

    def dag_run(self, dag_id: str, run_id: str) -> dict[str, Any]:
        run: dict[str, Any] = self.get(f"/dags/{_segment(dag_id)}/dagRuns/{_segment(run_id)}")
        return run

    def wait_for_run_state(
        self, dag_id: str, run_id: str, states: Collection[str], timeout: float
    ) -> dict[str, Any]:
        def probe() -> tuple[bool, Any]:
            run = self.dag_run(dag_id, run_id)
            if run["state"] in FINISHED_RUN_STATES and run["state"] not in states:
                raise AssertionError(f"run {run_id} ended {run['state']}, wanted {sorted(states)}")
            return run["state"] in states, run

        run: dict[str, Any] = self._wait(
            f"run {dag_id}/{run_id} to be {sorted(states)}", probe, timeout
        )
        return run

    # -- task instances --

    def _ti_path(self, dag_id: str, run_id: str, task_id: str) -> str:
        return (
            f"/dags/{_segment(dag_id)}/dagRuns/{_segment(run_id)}/taskInstances/{_segment(task_id)}"
        )

    def task_instance(self, dag_id: str, run_id: str, task_id: str) -> dict[str, Any]:
        ti: dict[str, Any] = self.get(self._ti_path(dag_id, run_id, task_id))
        return ti

    def wait_for_task_state(
        self,
        dag_id: str,
        run_id: str,
        task_id: str,
        states: Collection[str],
        timeout: float,
        *,
        passing: Collection[str] = (),
    ) -> dict[str, Any]:
        """Wait until the task instance is in one of ``states``.

        A task instance that finishes in another state fails the wait at once, unless
        that state is one of ``passing`` (``up_for_retry`` when a retry is expected).
        """
        seen: list[str] = []

        def probe() -> tuple[bool, Any]:
            ti = self.task_instance(dag_id, run_id, task_id)
            state = ti["state"]
            if not seen or seen[-1] != state:
                seen.append(state)
            if state in FINISHED_TASK_STATES and state not in states and state not in passing:
                raise AssertionError(
                    f"{dag_id}.{task_id} ended {state} (states seen: {seen}), "
                    f"wanted {sorted(states)}"
                )
            return state in states, {"states_seen": seen, "ti": ti}

        result = self._wait(f"{dag_id}.{task_id} to be {sorted(states)}", probe, timeout)
        ti: dict[str, Any] = result["ti"]
        return ti

    def triggerer_holding(self, dag_id: str, run_id: str, task_id: str) -> str | None:
        """Hostname of the triggerer running this task instance's trigger, if any runs it."""
        ti = self.task_instance(dag_id, run_id, task_id)
        job = ti.get("triggerer_job")
        if not ti.get("trigger") or not job or ti["trigger"].get("triggerer_id") != job.get("id"):
            return None
        return str(job["hostname"])

    def wait_for_triggerer(
        self,
        dag_id: str,
        run_id: str,
        task_id: str,
        timeout: float,
        *,
        other_than: str | None = None,
    ) -> str:
        """Wait until a triggerer (not ``other_than``) holds the task's trigger; its hostname."""

        def probe() -> tuple[bool, Any]:
            holder = self.triggerer_holding(dag_id, run_id, task_id)
            return holder is not None and holder != other_than, holder

        what = f"a triggerer{'' if other_than is None else ' other than ' + other_than}"
        holder: str = self._wait(f"{what} to hold {dag_id}.{task_id}", probe, timeout)
        return holder

    def set_task_state(self, dag_id: str, run_id: str, task_id: str, state: str) -> None:
        """Mark the task instance ``failed`` or ``success``, as a user does in the UI."""
        self.request("PATCH", self._ti_path(dag_id, run_id, task_id), json={"new_state": state})

    def task_instances(self, dag_id: str, run_id: str) -> list[dict[str, Any]]:
        """Every task instance of the run (mapped ones one by one)."""
        body = self.get(
            f"/dags/{_segment(dag_id)}/dagRuns/{_segment(run_id)}/taskInstances", limit=10_000
        )
        instances: list[dict[str, Any]] = body["task_instances"]
        return instances

    def task_log(
        self, dag_id: str, run_id: str, task_id: str, try_number: int = 1, map_index: int = -1
    ) -> str:
        """The task instance's log for one try, as the UI shows it (one event per line).

        While the task is deferred this includes what its trigger logged in the triggerer.
        """
        params: dict[str, Any] = {"full_content": True}
        if map_index >= 0:
            params["map_index"] = map_index
        body = self.request(
            "GET",
            f"{self._ti_path(dag_id, run_id, task_id)}/logs/{try_number}",
            params=params,
            headers={"Accept": "application/json"},
        ).json()
        lines: list[str] = []
        for item in body.get("content", []):
            if isinstance(item, Mapping):
                lines.append(str(item.get("event", "")))
            else:
                lines.append(str(item))
        return "\n".join(lines)

    def wait_for_log(
        self, dag_id: str, run_id: str, task_id: str, needle: str, timeout: float
    ) -> str:
        """Wait until the task's log (try 1) contains ``needle``; returns the log."""

        def probe() -> tuple[bool, Any]:
            text = self.task_log(dag_id, run_id, task_id)
            return needle in text, text[-2000:]

        self._wait(f"{needle!r} in the log of {dag_id}.{task_id}", probe, timeout)
        return self.task_log(dag_id, run_id, task_id)

    def xcom(self, dag_id: str, run_id: str, task_id: str, key: str = "return_value") -> Any:
        """The XCom value as stored (JSON), the way a downstream task's pull sees it."""
        entry = self.get(f"{self._ti_path(dag_id, run_id, task_id)}/xcomEntries/{_segment(key)}")
        return entry["value"]
