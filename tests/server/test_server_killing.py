"""Killing on its own: a process group, processes that left it, and the /proc tag sweep."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from support.server_process import process_gone, wait_for_pid_file, wait_until_gone

from remsvc_core.server.children import Children
from remsvc_core.server.killing import RUN_TAG_VAR, kill_group, kill_tagged, tagged_pids

pytestmark = pytest.mark.skipif(not os.path.isdir("/proc"), reason="checks processes through /proc")


class Trees:
    """Process trees started like commands (own session, a run tag), cleaned up after."""

    def __init__(self, scratch: Path) -> None:
        self.scratch = scratch
        self.popens: list[subprocess.Popen[bytes]] = []
        self.pids: list[int] = []

    def start(self, tag: str, name: str) -> tuple[subprocess.Popen[bytes], int]:
        """A shell whose child escaped its group with setsid; returns (shell, escapee pid)."""
        pid_file = self.scratch / f"{name}.pid"
        popen = subprocess.Popen(
            ["/bin/sh", "-c", f"setsid sh -c 'echo $$ > {pid_file}; exec sleep 60' & wait"],
            env={**os.environ, RUN_TAG_VAR: tag},
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            start_new_session=True,
        )
        self.popens.append(popen)
        escapee = wait_for_pid_file(pid_file)
        self.pids.append(escapee)
        return popen, escapee

    def close(self) -> None:
        for pid in [*self.pids, *(p.pid for p in self.popens)]:
            if not process_gone(pid):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
        for popen in self.popens:
            popen.wait(timeout=10)


@pytest.fixture
def trees(tmp_path: Path) -> Iterator[Trees]:
    started = Trees(tmp_path)
    try:
        yield started
    finally:
        started.close()


def test_the_tag_finds_the_processes_of_one_command_only(trees):
    shell, escapee = trees.start("test-tag-a", "a")
    other_shell, other_escapee = trees.start("test-tag-b", "b")
    found = tagged_pids(["test-tag-a"])
    assert {shell.pid, escapee} <= set(found)
    assert not {other_shell.pid, other_escapee} & set(found)
    assert {shell.pid, escapee, other_shell.pid, other_escapee} <= set(
        tagged_pids(["test-tag-a", "test-tag-b"])
    )
    assert tagged_pids([]) == []
    # A tag that is a prefix of another must not match it.
    assert not set(tagged_pids(["test-tag-"])) & {shell.pid, escapee}


def test_killing_the_group_misses_the_escapee_and_the_sweep_gets_it(trees):
    shell, escapee = trees.start("test-tag-c", "c")
    bystander_shell, bystander = trees.start("test-tag-d", "d")
    kill_group(shell.pid)
    assert shell.wait(timeout=10) == -9
    assert not process_gone(escapee), "setsid should have taken it out of the group"
    kill_tagged(["test-tag-c"])
    assert wait_until_gone(escapee)
    assert not process_gone(bystander)
    assert bystander_shell.poll() is None
    kill_group(shell.pid)  # a group that is gone already is fine


async def test_children_kill_all_reaches_every_command_and_reaps_them(trees):
    children = Children()
    escapees = []
    for name in ("e", "f"):
        shell, escapee = trees.start(f"test-tag-{name}", name)
        children.add(shell, f"test-tag-{name}")
        escapees.append(escapee)
    assert len(children.pids) == 2
    children.kill_all()
    for popen in trees.popens:
        children.reap(popen)
    assert await children.wait_idle(10.0)
    assert children.pids == []
    assert all(wait_until_gone(pid) for pid in escapees)
