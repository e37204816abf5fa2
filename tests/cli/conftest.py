"""Running the real ``remsvc`` command line, as a subprocess, with bounded waits."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable, Mapping
from pathlib import Path

import pytest

CLI_TIMEOUT_S = 90.0


@pytest.fixture
def cli_env(tmp_path: Path) -> dict[str, str]:
    """The environment for a CLI subprocess: no stray token, no colour, UTF-8."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("REMSVC_")}
    env["PYTHONIOENCODING"] = "utf-8"
    env["HOME"] = str(tmp_path)
    return env


RunCli = Callable[..., subprocess.CompletedProcess[str]]


@pytest.fixture
def run_cli(cli_env: dict[str, str]) -> RunCli:
    """``run_cli("run", "echo hi", input=..., env_extra=...)``: ``python -m remsvc_core.cli``
    in a subprocess (stdout/stderr pipes, so never a terminal), killed after 90 s."""

    def run(
        *args: str,
        input: str | None = None,
        env_extra: Mapping[str, str] | None = None,
        timeout: float = CLI_TIMEOUT_S,
    ) -> subprocess.CompletedProcess[str]:
        env = {**cli_env, **(env_extra or {})}
        return subprocess.run(
            [sys.executable, "-m", "remsvc_core.cli", *args],
            input=input,
            capture_output=True,
            text=True,
            env=env,
            timeout=timeout,
            stdin=None if input is not None else subprocess.DEVNULL,
            check=False,
        )

    return run
