"""Run one command in its own child process and collect what it printed.

Each command gets a fresh process in a new session (so its process group id is its
pid), stdin on /dev/null (commands that read stdin see EOF at once), and separate
stdout/stderr pipes. Each pipe keeps at most ``output_cap`` bytes and is drained past
the cap, so a chatty child never blocks on a full pipe.

How a command ends, and what is left behind:

* **Timeout, cancellation, shutdown:** the whole process group is killed with SIGKILL
  (the shell, its children and grandchildren), and so is every process that left the
  group (``setsid``, a daemon's double fork): each command's processes inherit
  ``REMSVC_RUN_TAG=<unique id>`` in their environment, and /proc is searched for it.
  (A process that clears its own environment is beyond this.) After a timeout the
  partial output is discarded, as upstream does.
* **Normal exit:** the main child's exit is noticed *without reaping it* (pidfd, or
  ``waitid(WNOWAIT)``), so its pid — which is also the group id — cannot be recycled.
  The runner then waits up to ``linger_s`` for the pipes to close (background jobs that
  still hold them get that long to finish), kills whatever is left in the group, and
  only then reaps. Nothing the command started stays running, and a forgotten
  ``sleep 1000 &`` delays the response by ``linger_s`` at most. A process that left the
  group on purpose (``setsid``) from a command that finished by itself is left alone
  (a command may start a service on purpose); our end of its pipes is closed.
"""

from __future__ import annotations

import asyncio
import codecs
import contextlib
import logging
import os
import pwd
import shutil
import signal
import subprocess
import sys
import threading
import uuid
from collections.abc import Collection
from dataclasses import dataclass

__all__ = ["CommandRunner", "ExecResult", "truncation_marker"]

log = logging.getLogger("remsvc.server")

TIMED_OUT = "process timed out"
# How long a normally finished command's leftovers may keep its pipes open.
DEFAULT_LINGER_S = 0.5
# Set in every command's environment; inherited by all it starts (see module docstring).
RUN_TAG_VAR = "REMSVC_RUN_TAG"
# A process tree that forks while it is being killed needs another sweep; bounded.
_ESCAPE_SWEEPS = 5
# Bounds for things that should take microseconds once SIGKILL was sent.
_AFTER_KILL_S = 5.0


def truncation_marker(cap: int) -> str:
    """The exact text upstream appends to output cut at ``cap`` bytes."""
    return f"\n\x01[remSvc: output truncated at {cap} bytes]\x01\n"


@dataclass(frozen=True)
class ExecResult:
    """What one command produced. ``pid`` is the child's (None if it never started)."""

    rc: int
    out: str
    err: str
    pid: int | None = None
    timed_out: bool = False


class _CappedPipe(asyncio.Protocol):
    """Collects up to ``cap`` bytes from a pipe and throws the rest away."""

    def __init__(self, cap: int, closed: asyncio.Future[None]) -> None:
        self._cap = cap
        self._chunks: list[bytes] = []
        self._size = 0
        self.truncated = False
        self.closed = closed

    def data_received(self, data: bytes) -> None:
        room = self._cap - self._size
        if room > 0:
            piece = data[:room]
            self._chunks.append(piece)
            self._size += len(piece)
        if len(data) > room:
            self.truncated = True

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.closed.done():
            self.closed.set_result(None)

    def text(self) -> str:
        data = b"".join(self._chunks)
        decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        if not self.truncated:
            return decoder.decode(data, final=True)
        # A cut can split a multi-byte character; drop the stump rather than show U+FFFD.
        return decoder.decode(data, final=False) + truncation_marker(self._cap)


def _exit_code(returncode: int) -> int:
    # Killed by a signal: report it the way shells do (128 + signal number).
    return 128 - returncode if returncode < 0 else returncode


@dataclass(frozen=True)
class _Identity:
    name: str
    uid: int
    gid: int
    groups: list[int]
    home: str


# Switching user happens in a tiny exec'd helper rather than through Popen(user=...):
# that would make Python fork() instead of vfork(), and fork() runs grpc's atfork
# handlers in a child of a busy multi-threaded server, which was seen to crash the
# child (SIGSEGV) now and then. The helper runs with -I -S, so it starts in
# milliseconds and imports nothing of ours.
_DROP_AND_EXEC = """
import os, sys
name, uid, gid = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
groups = [int(g) for g in sys.argv[4].split(",") if g]
try:
    os.setgroups(groups)
    os.setgid(gid)
    os.setuid(uid)
    if os.getuid() != uid or os.geteuid() != uid or os.getegid() != gid:
        raise PermissionError(1, "ids did not change")
except OSError as exc:
    os.write(2, f"cannot switch to user {name}: {exc.strerror or exc}".encode())
    os._exit(125)
try:
    os.execv(sys.argv[5], sys.argv[5:])
except OSError as exc:
    os.write(2, f"cannot start {sys.argv[5]} as user {name}: {exc.strerror or exc}".encode())
    os._exit(127)
"""


def _drop_privileges_argv(identity: _Identity) -> list[str]:
    groups = ",".join(str(g) for g in identity.groups)
    return [
        sys.executable,
        "-I",
        "-S",
        "-c",
        _DROP_AND_EXEC,
        identity.name,
        str(identity.uid),
        str(identity.gid),
        groups,
    ]


class _UserError(Exception):
    def __init__(self, rc: int, message: str) -> None:
        super().__init__(message)
        self.rc = rc


def _resolve_user(name: str) -> _Identity | None:
    """The ids to drop to, or None when no drop is needed (empty name, or already that user)."""
    if not name:
        return None
    try:
        entry = pwd.getpwnam(name)
    except (KeyError, ValueError):  # ValueError: a NUL in the name
        raise _UserError(1, f"user not found: {name}") from None
    if entry.pw_uid == os.geteuid() and entry.pw_gid == os.getegid():
        return None
    try:
        groups = os.getgrouplist(name, entry.pw_gid)
    except OSError as exc:
        raise _UserError(
            125, f"cannot switch to user {name}: cannot read its groups: {exc}"
        ) from None
    return _Identity(name, entry.pw_uid, entry.pw_gid, groups, entry.pw_dir)


class CommandRunner:
    """Runs commands with one output cap and timeout; remembers its live children."""

    def __init__(
        self,
        *,
        output_cap: int,
        timeout_s: float,
        linger_s: float = DEFAULT_LINGER_S,
        hidden_env: Collection[str] = (),
    ) -> None:
        self.output_cap = output_cap
        self.timeout_s = timeout_s
        self.linger_s = linger_s
        self.hidden_env = frozenset(hidden_env)
        self._live: dict[int, subprocess.Popen[bytes]] = {}
        self._tags: dict[int, str] = {}  # pid -> the RUN_TAG_VAR value of its processes
        self._reaping: set[int] = set()

    def child_env(self) -> dict[str, str] | None:
        """The commands' environment: the server's, minus variables that held tokens."""
        if not self.hidden_env:
            return None
        return {k: v for k, v in os.environ.items() if k not in self.hidden_env}

    @property
    def live_pids(self) -> list[int]:
        return sorted(self._live)

    def kill_all(self) -> None:
        """SIGKILL every running command's processes (server shutdown)."""
        for pid in list(self._live):
            self._kill_everything(pid)

    def _kill_everything(self, pid: int) -> None:
        """SIGKILL the command's process group and every process that escaped it."""
        _kill_group(pid)
        tag = self._tags.get(pid)
        if tag is not None:
            _kill_tagged(tag)

    async def wait_idle(self, timeout: float) -> bool:
        """Wait (bounded) until every child was reaped; True if none is left."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        # Reaping happens in threads too, so poll (briefly) rather than wire up events.
        while self._live and loop.time() < deadline:  # noqa: ASYNC110
            await asyncio.sleep(0.02)
        return not self._live

    def argv(self, cmd: str, cmdtyp: int) -> list[str]:
        if cmdtyp == 0:
            return ["/bin/sh", "-c", cmd]
        if cmdtyp == 1:
            pwsh = shutil.which("pwsh")
            if pwsh is None:
                raise _UserError(
                    1,
                    "pwsh not found: PowerShell (cmdtyp 1) is not installed on this server "
                    "or not on PATH",
                )
            return [pwsh, "-Command", cmd]
        raise _UserError(1, f"unsupported cmdtyp {cmdtyp}: use 0 (shell) or 1 (PowerShell)")

    async def run(self, cmd: str, cmdtyp: int = 0, cmdusr: str = "") -> ExecResult:
        if "\x00" in cmd:
            # argv is made of C strings: exec would refuse it (Popen raises ValueError).
            return ExecResult(
                rc=127, out="", err="cannot start the command: it contains a NUL character"
            )
        try:
            argv = self.argv(cmd, cmdtyp)
            identity = _resolve_user(cmdusr)
        except _UserError as exc:
            return ExecResult(rc=exc.rc, out="", err=str(exc))
        try:
            proc = self._spawn(argv, identity)
        except (OSError, subprocess.SubprocessError) as exc:
            if identity is not None:
                return ExecResult(rc=125, out="", err=f"cannot switch to user {cmdusr}: {exc}")
            return ExecResult(rc=127, out="", err=f"cannot start {argv[0]}: {exc}")
        self._live[proc.pid] = proc
        try:
            return await self._supervise(proc)
        finally:
            # Also reached on cancellation (client went away, deadline, shutdown). Only an
            # unreaped child's pid is still reserved as the group id, so only then kill.
            if proc.returncode is None:
                self._kill_everything(proc.pid)
                self._reap(proc)

    def _spawn(self, argv: list[str], identity: _Identity | None) -> subprocess.Popen[bytes]:
        env = self.child_env()
        env = dict(os.environ) if env is None else env
        tag = uuid.uuid4().hex
        env[RUN_TAG_VAR] = tag
        if identity is not None:
            argv = [*_drop_privileges_argv(identity), *argv]
            env.update(HOME=identity.home, USER=identity.name, LOGNAME=identity.name)
        proc = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            start_new_session=True,
            close_fds=True,
            bufsize=0,
            env=env,
        )
        self._tags[proc.pid] = tag
        return proc

    async def _supervise(self, proc: subprocess.Popen[bytes]) -> ExecResult:
        loop = asyncio.get_running_loop()
        out = _CappedPipe(self.output_cap, loop.create_future())
        err = _CappedPipe(self.output_cap, loop.create_future())
        assert proc.stdout is not None
        assert proc.stderr is not None
        transports: list[asyncio.BaseTransport] = []
        exited = _exit_notice(loop, proc.pid)
        try:
            for pipe, protocol in ((proc.stdout, out), (proc.stderr, err)):
                transport, _ = await loop.connect_read_pipe(lambda p=protocol: p, pipe)  # type: ignore[misc]
                transports.append(transport)
            done, _ = await asyncio.wait({exited}, timeout=self.timeout_s)
            timed_out = not done
            if timed_out:
                self._kill_everything(proc.pid)
                await asyncio.wait({exited}, timeout=_AFTER_KILL_S)
            else:
                await asyncio.wait({out.closed, err.closed}, timeout=self.linger_s)
            # The leader is a zombie now (not reaped), so its group id is still ours.
            _kill_group(proc.pid)
            # Killed members close their ends at once; only a process that left the
            # group (setsid) could hold a pipe now, and it does not get to stall us.
            await asyncio.wait({out.closed, err.closed}, timeout=self.linger_s)
        finally:
            exited.cancel()  # releases the pidfd when we leave early
            for opened in transports:
                opened.close()
        returncode = self._reap(proc)
        if timed_out:
            return ExecResult(rc=1, out="", err=TIMED_OUT, pid=proc.pid, timed_out=True)
        if returncode is None:  # pragma: no cover - exit was seen, so the child is reapable
            returncode = -signal.SIGKILL
        return ExecResult(rc=_exit_code(returncode), out=out.text(), err=err.text(), pid=proc.pid)

    def _reap(self, proc: subprocess.Popen[bytes]) -> int | None:
        """Collect the child's exit status; a child not dead yet is reaped in the background."""
        if proc.poll() is None:
            if proc.pid in self._reaping:
                return None
            self._reaping.add(proc.pid)

            def reap_later() -> None:
                with contextlib.suppress(Exception):
                    proc.wait()
                self._live.pop(proc.pid, None)
                self._tags.pop(proc.pid, None)
                self._reaping.discard(proc.pid)

            threading.Thread(target=reap_later, name=f"remsvc-reap-{proc.pid}", daemon=True).start()
            return None
        for pipe in (proc.stdout, proc.stderr):
            if pipe is not None:
                with contextlib.suppress(OSError):
                    pipe.close()
        self._live.pop(proc.pid, None)
        self._tags.pop(proc.pid, None)
        return proc.returncode


def _kill_group(pgid: int) -> None:
    try:
        os.killpg(pgid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    except PermissionError as exc:  # pragma: no cover - a non-root server, another user's child
        log.warning("cannot kill process group %d: %s", pgid, exc)


def _tagged_pids(tag: str) -> list[int]:
    """Running processes whose environment holds ``RUN_TAG_VAR=tag`` (from /proc)."""
    entry = f"\0{RUN_TAG_VAR}={tag}\0".encode()
    found = []
    try:
        names = os.listdir("/proc")
    except OSError:  # pragma: no cover - no /proc: nothing more can be found
        return []
    for name in names:
        if not name.isdigit() or int(name) == os.getpid():
            continue
        try:
            with open(f"/proc/{name}/environ", "rb") as handle:
                environ = handle.read()
        except OSError:  # gone, or not ours to read
            continue
        if entry in b"\0" + environ:
            found.append(int(name))
    return found


def _kill_tagged(tag: str) -> None:
    """SIGKILL every process carrying the tag, sweeping again if some forked meanwhile."""
    for _ in range(_ESCAPE_SWEEPS):
        pids = _tagged_pids(tag)
        if not pids:
            return
        for pid in pids:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)
    log.warning("processes of a killed command kept appearing: %s", _tagged_pids(tag))


def _exit_notice(loop: asyncio.AbstractEventLoop, pid: int) -> asyncio.Future[None]:
    """A future set when ``pid`` exits; the child is left unreaped (a zombie) for us."""
    future: asyncio.Future[None] = loop.create_future()

    def mark() -> None:
        if not future.done():
            future.set_result(None)

    try:
        pidfd = os.pidfd_open(pid)
    except (AttributeError, OSError):
        pidfd = -1
    if pidfd >= 0:
        loop.add_reader(pidfd, mark)

        def release(_: object) -> None:
            loop.remove_reader(pidfd)
            os.close(pidfd)

        future.add_done_callback(release)
        return future

    def wait_without_reaping() -> None:
        with contextlib.suppress(ChildProcessError):
            os.waitid(os.P_PID, pid, os.WEXITED | os.WNOWAIT)
        with contextlib.suppress(RuntimeError):  # the loop may be closed at shutdown
            loop.call_soon_threadsafe(mark)

    threading.Thread(target=wait_without_reaping, name=f"remsvc-wait-{pid}", daemon=True).start()
    return future
