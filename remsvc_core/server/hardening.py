"""Keeping one identity's token from the commands another identity runs.

Every command runs as the server's user (unless it asks for ``cmdusr``), so it may
read what that user may read under /proc, including the server's own process: its
initial environment (``/proc/<pid>/environ``, where systemd's ``EnvironmentFile``
puts the tokens), its memory (``mem``, which holds the configuration), its open
files. Any authenticated caller could run ``cat /proc/$PPID/environ`` and learn
every other identity's token. :func:`protect_process` closes that, for a server
that owns its process (``remsvc-server``, ``remsvc serve``):

* the process is made **not dumpable** (``prctl(PR_SET_DUMPABLE, 0)``): the kernel
  then treats /proc/<pid>/environ, mem, maps, fd/, cwd, ... of the server as
  root's, and refuses them to processes of the same user that are not root;
* the variables that held tokens are **removed from the environment**: from
  ``os.environ``, from libc's (``unsetenv``, which ``os.environ`` does) and from the
  memory /proc/<pid>/environ shows, which is the environment the process was
  started with and which ``unsetenv`` does not touch: those bytes are zeroed.

What it cannot do: a command running as **root** can read any process's memory,
not dumpable or not, so a server that runs commands as root protects nothing from
them (docs/server-operators.md says so). Nothing secret is on the command line
(tokens are never passed as arguments), and commands never inherit the token
variables (see ``hidden_env``).
"""

from __future__ import annotations

import ctypes
import os
import sys
from collections.abc import Collection
from dataclasses import dataclass, field

__all__ = ["Protection", "protect_process"]

_PR_GET_DUMPABLE = 3
_PR_SET_DUMPABLE = 4


@dataclass
class Protection:
    """What :func:`protect_process` did, and what it could not do (for the log)."""

    not_dumpable: bool = False
    removed: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)


def protect_process(secret_names: Collection[str]) -> Protection:
    """Make this process unreadable to its user's other processes and forget
    ``secret_names`` from its environment (see the module docstring). Never raises."""
    done = Protection()
    for name in sorted(secret_names):
        if os.environ.pop(name, None) is not None:  # also unsetenv()s it
            done.removed.append(name)
    if not sys.platform.startswith("linux"):
        done.problems.append("not Linux: the process could not be made non-dumpable")
        return done
    try:
        libc = ctypes.CDLL(None, use_errno=True)
    except OSError as exc:  # pragma: no cover - a Linux without a C library
        done.problems.append(f"cannot load the C library: {exc}")
        return done
    _zero_initial_environment(secret_names, done)
    if libc.prctl(_PR_SET_DUMPABLE, 0, 0, 0, 0) != 0:
        done.problems.append(f"prctl(PR_SET_DUMPABLE) failed: {os.strerror(ctypes.get_errno())}")
    done.not_dumpable = libc.prctl(_PR_GET_DUMPABLE, 0, 0, 0, 0) == 0
    return done


def _zero_initial_environment(names: Collection[str], done: Protection) -> None:
    """Zero ``NAME=value`` of every name in the environment block this process was
    started with: what /proc/<pid>/environ shows, whatever libc's environ says now."""
    if not names:
        return
    try:
        with open("/proc/self/stat", "rb") as handle:
            stat = handle.read()
        # Fields after the parenthesised name start at field 3; env_start and
        # env_end are fields 50 and 51 (proc(5)).
        fields = stat.rsplit(b")", 1)[1].split()
        start, end = int(fields[47]), int(fields[48])
    except (OSError, IndexError, ValueError) as exc:
        done.problems.append(f"cannot find the initial environment: {exc}")
        return
    if not 0 < start < end:
        done.problems.append("cannot find the initial environment: /proc/self/stat hides it")
        return
    block = ctypes.string_at(start, end - start)
    prefixes = tuple(f"{name}=".encode() for name in names)
    offset = 0
    for entry in block.split(b"\0"):
        if entry.startswith(prefixes):
            ctypes.memset(start + offset, 0, len(entry))
        offset += len(entry) + 1
