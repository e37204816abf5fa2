"""protect_process: the variables that held tokens leave every copy of the environment."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="Linux /proc")

SECRET = "tok-hardening-" + "5e1f" * 8
CHILD = """
import json, os, sys, time
from remsvc_core.server.hardening import protect_process
done = protect_process(["REMSVC_TOKEN_X", "NOT_SET_AT_ALL"])
print(json.dumps({"removed": done.removed, "not_dumpable": done.not_dumpable,
                  "problems": done.problems, "left": os.environ.get("REMSVC_TOKEN_X"),
                  "kept": os.environ.get("REMSVC_KEPT")}), flush=True)
time.sleep(30)
"""


def test_token_variables_are_gone_and_the_process_is_not_dumpable():
    env = {**os.environ, "REMSVC_TOKEN_X": SECRET, "REMSVC_KEPT": "still-here"}
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD], env=env, stdout=subprocess.PIPE, stdin=subprocess.DEVNULL
    )
    try:
        assert child.stdout is not None
        report = json.loads(child.stdout.readline())
        environ = Path(f"/proc/{child.pid}/environ").read_bytes()  # as the test's user
    finally:
        child.kill()
        child.wait(timeout=10)
    assert report == {
        "removed": ["REMSVC_TOKEN_X"],
        "not_dumpable": True,
        "problems": [],
        "left": None,
        "kept": "still-here",
    }
    assert SECRET.encode() not in environ
    assert b"REMSVC_TOKEN_X" not in environ
    assert b"REMSVC_KEPT=still-here" in environ  # only the named variables are touched


def test_a_server_process_logs_that_it_is_protected(server_process):
    server = server_process(auth={"ops": "${REMSVC_TOKEN_OPS}"}, env={"REMSVC_TOKEN_OPS": SECRET})
    deadline = time.monotonic() + 10
    while "not dumpable" not in server.log_text() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert "process not dumpable; token variables removed: REMSVC_TOKEN_OPS" in server.log_text()
    assert SECRET.encode() not in Path(f"/proc/{server.pid}/environ").read_bytes()
