"""A sandbox that stands in for the machines the docs talk about.

The docs use realistic names: hosts ``db1.example.com`` and ``web1.example.com`` on
port 50051, files under ``/etc/remsvc`` and ``/var/log/remsvc``, the server's venv in
``/opt/remsvc/venv``, a token in ``~/.config/remsvc/token``. Before a block runs,
:meth:`Site.localize` rewrites exactly those strings to their sandbox equivalents
(the hosts become ``localhost``, the port the one a test server really listens on,
the paths directories under the test's tmp_path, ``~`` the sandbox's HOME). Nothing
else in a block is changed.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

from docs_blocks import Block

HOSTS = ("db1.example.com", "web1.example.com")
DOC_PORT = "50051"
SANDBOXED_DIRS = ("/etc/remsvc", "/etc/systemd", "/var/log/remsvc")
VENV_BIN = "/opt/remsvc/venv/bin/"
BLOCK_TIMEOUT_S = 120.0
RUNNER = Path(__file__).with_name("run_python_blocks.py")


@dataclass
class Site:
    root: Path
    port: int | None = None
    env_extra: dict[str, str] = field(default_factory=dict)
    # The interpreter whose environment the reader has activated (its bin/ first on PATH).
    python: Path = field(default_factory=lambda: Path(sys.executable))

    def __post_init__(self) -> None:
        for directory in (self.home, self.work, *(self.sandboxed(d) for d in SANDBOXED_DIRS)):
            directory.mkdir(parents=True, exist_ok=True)

    @property
    def home(self) -> Path:
        return self.root / "home"

    @property
    def work(self) -> Path:
        return self.root / "work"

    def sandboxed(self, path: str) -> Path:
        """Where an absolute path (or ``~/...``) from the docs lives in the sandbox."""
        if path.startswith("~/"):
            return self.home / path[2:]
        return self.root / path.lstrip("/")

    def localize(self, text: str) -> str:
        for host in HOSTS:
            text = text.replace(host, "localhost")
        if self.port is not None:
            text = text.replace(DOC_PORT, str(self.port))
        text = text.replace(VENV_BIN, str(self.python.parent) + "/")
        for directory in SANDBOXED_DIRS:
            text = text.replace(directory, str(self.sandboxed(directory)))
        return text

    def env(self) -> dict[str, str]:
        env = {
            key: value
            for key, value in os.environ.items()
            if not key.startswith("REMSVC_") and key != "PYTHONPATH"
        }
        env["HOME"] = str(self.home)
        env["PATH"] = f"{self.python.parent}{os.pathsep}{env.get('PATH', '')}"
        env["VIRTUAL_ENV"] = str(self.python.parent.parent)
        env["MPLBACKEND"] = "Agg"
        env["COLUMNS"] = "120"
        env.update(self.env_extra)
        return env

    def write(self, block: Block) -> Path:
        """Write a block that names a file into its sandbox location."""
        assert block.path is not None
        target = self.sandboxed(block.path)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(self.localize(block.text), encoding="utf-8")
        return target

    def run_shell(self, block: Block) -> subprocess.CompletedProcess[str]:
        """Run a shell block with bash -euo pipefail; fail the test if it fails."""
        script = self.localize(block.text)
        done = subprocess.run(
            ["bash", "-euo", "pipefail", "-c", script],
            cwd=self.work,
            env=self.env(),
            capture_output=True,
            text=True,
            timeout=BLOCK_TIMEOUT_S,
            stdin=subprocess.DEVNULL,
        )
        if done.returncode != 0:
            raise AssertionError(
                f"{block.where}: the shell example failed with exit status {done.returncode}\n"
                f"--- script (as run) ---\n{script}\n--- stdout ---\n{done.stdout}\n"
                f"--- stderr ---\n{done.stderr}"
            )
        return done

    def run_python(self, found: list[Block]) -> subprocess.CompletedProcess[str]:
        """Run python blocks in order, in one namespace, in a fresh interpreter."""
        payload = [{"where": b.where, "code": self.localize(b.text)} for b in found]
        script = self.root / f"blocks-{found[0].doc}.json"
        script.write_text(json.dumps(payload), encoding="utf-8")
        done = subprocess.run(
            [str(self.python), str(RUNNER), str(script)],
            cwd=self.work,
            env=self.env(),
            capture_output=True,
            text=True,
            timeout=BLOCK_TIMEOUT_S * 2,
            stdin=subprocess.DEVNULL,
        )
        if done.returncode != 0:
            raise AssertionError(
                f"a python example in docs/{found[0].doc} failed\n--- stdout ---\n"
                f"{done.stdout}\n--- stderr ---\n{done.stderr}"
            )
        return done
