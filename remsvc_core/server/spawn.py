"""Starting a command's child process: its argv, its environment, its pipes.

Each command gets a fresh process in a new session (so its process group id is its
pid), stdin on /dev/null (commands that read stdin see EOF at once), and separate
stdout/stderr pipes whose read ends the caller watches.

Two ways to start it. :func:`os.posix_spawn` costs the event loop about half of
what :class:`subprocess.Popen` does, but unlike ``Popen(close_fds=True)`` does not
close other descriptors in the child itself; so it is used only when the process's
descriptors were all made close-on-exec (the CLI server sees to that, see
``app.serve``). Otherwise (a server embedded in someone else's process, whose
descriptors are not ours to change) Popen is used.
"""

from __future__ import annotations

import itertools
import os
import secrets
import shutil
import signal
import subprocess
import threading
from collections.abc import Collection, Mapping
from dataclasses import dataclass

from remsvc_core.server.children import Child
from remsvc_core.server.identity import UserIdentity, drop_privileges_argv, resolve_user
from remsvc_core.server.killing import RUN_TAG_VAR
from remsvc_core.server.outcome import CannotStart

__all__ = ["CommandEnvironment", "Spawned", "Spawner", "command_argv"]


def command_argv(cmd: str, cmdtyp: int) -> list[str]:
    """The argv that runs ``cmd``: ``/bin/sh -c`` (cmdtyp 0) or ``pwsh -Command`` (1)."""
    if cmdtyp == 0:
        return ["/bin/sh", "-c", cmd]
    if cmdtyp == 1:
        pwsh = shutil.which("pwsh")
        if pwsh is None:
            raise CannotStart(
                1,
                "pwsh not found: PowerShell (cmdtyp 1) is not installed on this server "
                "or not on PATH",
            )
        return [pwsh, "-Command", cmd]
    raise CannotStart(1, f"unsupported cmdtyp {cmdtyp}: use 0 (shell) or 1 (PowerShell)")


class CommandEnvironment:
    """The environment commands start with: the server's, minus ``hidden`` variables.

    It is a snapshot taken once, when the runner is made (at server start): changes
    the server process makes to its own ``os.environ`` afterwards are not seen by
    commands. Copying a prepared dict costs a fraction of a microsecond a command,
    where rebuilding it from ``os.environ`` (which decodes every entry) costs ~20 µs.
    """

    __slots__ = ("_base",)

    def __init__(self, hidden: Collection[str], source: Mapping[str, str] | None = None) -> None:
        hidden = frozenset(hidden)
        items = (os.environ if source is None else source).items()
        self._base = {name: value for name, value in items if name not in hidden}

    def for_command(self, tag: str, identity: UserIdentity | None) -> dict[str, str]:
        """A fresh environment for one command carrying its run tag (see ``killing``)."""
        env = self._base.copy()
        env[RUN_TAG_VAR] = tag
        if identity is not None:
            env.update(identity.environment())
        return env


@dataclass(frozen=True)
class Spawned:
    """A started child, the run tag its processes carry, and our (read) ends of its pipes."""

    child: Child
    tag: str
    out_fd: int
    err_fd: int


class SpawnedChild:
    """A child started with :func:`os.posix_spawn`, reaped like a Popen."""

    __slots__ = ("pid", "returncode")

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.returncode: int | None = None

    def poll(self) -> int | None:
        if self.returncode is None:
            try:
                pid, status = os.waitpid(self.pid, os.WNOHANG)
            except ChildProcessError:  # reaped elsewhere; Popen says 0 then too
                self.returncode = 0
            else:
                if pid:
                    self.returncode = os.waitstatus_to_exitcode(status)
        return self.returncode

    def wait(self) -> int:
        if self.returncode is None:
            try:
                _, status = os.waitpid(self.pid, 0)
            except ChildProcessError:
                self.returncode = 0
            else:
                self.returncode = os.waitstatus_to_exitcode(status)
        return self.returncode


_devnull_lock = threading.Lock()
_devnull_fd = -1


def _devnull() -> int:
    """One read-only /dev/null descriptor for every command's stdin (opened once)."""
    global _devnull_fd
    if _devnull_fd < 0:
        with _devnull_lock:
            if _devnull_fd < 0:
                _devnull_fd = os.open(os.devnull, os.O_RDONLY | os.O_CLOEXEC)
    return _devnull_fd


_RESTORED_SIGNALS = tuple(
    getattr(signal, name) for name in ("SIGPIPE", "SIGXFSZ") if hasattr(signal, name)
)


class Spawner:
    """Starts commands with one environment; see the module docstring for ``posix_spawn``."""

    def __init__(self, environment: CommandEnvironment, *, posix_spawn: bool) -> None:
        self.environment = environment
        self._posix_spawn = posix_spawn and hasattr(os, "posix_spawn")
        # Run tags only need to be unique: a random prefix per spawner and a counter.
        self._tag_prefix = f"{secrets.token_hex(8)}-"
        self._serial = itertools.count(1)

    def spawn(self, cmd: str, cmdtyp: int, cmdusr: str) -> Spawned:
        """Start ``cmd``; raises :class:`CannotStart` with the rc upstream would give."""
        if "\x00" in cmd:
            # argv is made of C strings: exec would refuse it (Popen raises ValueError).
            raise CannotStart(127, "cannot start the command: it contains a NUL character")
        argv = command_argv(cmd, cmdtyp)
        identity = resolve_user(cmdusr)
        tag = f"{self._tag_prefix}{next(self._serial)}"
        try:
            out_r, out_w = os.pipe()
        except OSError as exc:  # out of descriptors
            raise CannotStart(127, f"cannot start {argv[0]}: {exc}") from None
        try:
            err_r, err_w = os.pipe()
        except OSError as exc:
            for fd in (out_r, out_w):
                os.close(fd)
            raise CannotStart(127, f"cannot start {argv[0]}: {exc}") from None
        try:
            child = self._start(argv, identity, tag, out_w, err_w)
        except (OSError, subprocess.SubprocessError) as exc:
            for fd in (out_r, err_r):
                os.close(fd)
            if identity is not None:
                raise CannotStart(125, f"cannot switch to user {cmdusr}: {exc}") from None
            raise CannotStart(127, f"cannot start {argv[0]}: {exc}") from None
        finally:
            # The child has its copies; ours would keep the pipes from ever closing.
            os.close(out_w)
            os.close(err_w)
        return Spawned(child, tag, out_r, err_r)

    def _start(
        self, argv: list[str], identity: UserIdentity | None, tag: str, out_w: int, err_w: int
    ) -> Child:
        if identity is not None:
            argv = [*drop_privileges_argv(identity), *argv]
        env = self.environment.for_command(tag, identity)
        if self._posix_spawn:
            try:
                pid = os.posix_spawn(
                    argv[0],
                    argv,
                    env,
                    file_actions=[
                        (os.POSIX_SPAWN_DUP2, _devnull(), 0),
                        (os.POSIX_SPAWN_DUP2, out_w, 1),
                        (os.POSIX_SPAWN_DUP2, err_w, 2),
                    ],
                    setsid=True,
                    # What Popen's restore_signals does: Python ignores these two, and
                    # an ignored signal stays ignored across exec.
                    setsigdef=_RESTORED_SIGNALS,
                )
            except NotImplementedError:  # a libc without POSIX_SPAWN_SETSID
                self._posix_spawn = False
            else:
                return SpawnedChild(pid)
        # No preexec_fn, user or group here: those make Python fork() instead of
        # vfork() (see remsvc_core.server.identity). start_new_session is done in the
        # vfork child.
        return subprocess.Popen(
            argv,
            stdin=_devnull(),
            stdout=out_w,
            stderr=err_w,
            start_new_session=True,
            close_fds=True,
            env=env,
        )
