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

Why it is written as event-loop callbacks rather than coroutines: a server runs a
command per request, often thousands in a row, and the event loop is the server's
only thread. The pidfd and both pipes are watched with ``loop.add_reader`` and the
deadline with one timer, so noticing the end of a command and handing its result on
(:meth:`CommandRunner.start`'s ``on_done``) happens in the same loop turn as the
child's exit, with no transports, tasks or ``asyncio.wait`` in between. The service
uses that to start the stream's next command right there, before it sends the
previous result.
"""

from __future__ import annotations

import asyncio
import codecs
import contextlib
import itertools
import logging
import os
import pwd
import secrets
import shutil
import signal
import subprocess
import sys
import threading
from collections.abc import Callable, Collection
from dataclasses import dataclass
from typing import Any, Protocol

__all__ = ["CommandRunner", "ExecResult", "RunningCommand", "truncation_marker"]

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
# One read per readiness event, as asyncio's pipe transports do.
_READ_SIZE = 256 * 1024


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


# What ``on_done`` receives: the result, or the exception that kept the runner from
# producing one (a server bug; the service reports it rather than lose the command).
Outcome = ExecResult | Exception


class _Capture:
    """Collects up to ``cap`` bytes of one pipe and throws the rest away."""

    __slots__ = ("cap", "data", "truncated")

    def __init__(self, cap: int) -> None:
        self.cap = cap
        self.data = bytearray()
        self.truncated = False

    def add(self, chunk: bytes) -> None:
        room = self.cap - len(self.data)
        if len(chunk) <= room:
            self.data += chunk
            return
        if room > 0:
            self.data += chunk[:room]
        self.truncated = True

    def text(self) -> str:
        if not self.truncated:
            return self.data.decode("utf-8", "replace")
        # A cut can split a multi-byte character; drop the stump rather than show U+FFFD.
        decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        return decoder.decode(self.data, final=False) + truncation_marker(self.cap)


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


class _Child(Protocol):
    """What the runner needs of a started child: Popen's poll/wait, or ours."""

    pid: int
    returncode: int | None

    def poll(self) -> int | None: ...

    def wait(self) -> int: ...


class _SpawnedChild:
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


class _BaseEnvironment:
    """The server's environment minus ``hidden``, rebuilt only when os.environ changed.

    Copying os.environ decodes every entry (about 15 µs a command). The dict of raw
    bytes that os.environ keeps (``_data``, private but there since Python 3.2) is
    compared instead, which takes a microsecond; without it, every call rebuilds.
    """

    def __init__(self, hidden: frozenset[str]) -> None:
        self._hidden = hidden
        self._source: dict[Any, Any] | None = None
        self._env: dict[str, str] = {}

    def current(self) -> dict[str, str]:
        source = getattr(os.environ, "_data", None)
        if not isinstance(source, dict) or source != self._source:
            self._env = {k: v for k, v in os.environ.items() if k not in self._hidden}
            self._source = dict(source) if isinstance(source, dict) else None
        return self._env


class CommandRunner:
    """Runs commands with one output cap and timeout; remembers its live children."""

    def __init__(
        self,
        *,
        output_cap: int,
        timeout_s: float,
        linger_s: float = DEFAULT_LINGER_S,
        hidden_env: Collection[str] = (),
        descriptors_private: bool = False,
    ) -> None:
        """``descriptors_private``: the caller made every descriptor of this process
        above stderr close-on-exec, and nothing in it makes inheritable ones (the CLI
        server sees to that at startup, see ``app.serve``). Commands are then started
        with :func:`os.posix_spawn`, which costs the event loop about half of what
        :class:`subprocess.Popen` does, but unlike ``Popen(close_fds=True)`` does not
        close other descriptors in the child itself. Without it (a server embedded in
        someone else's process, whose descriptors are not ours to change) Popen is used.
        """
        self.output_cap = output_cap
        self.timeout_s = timeout_s
        self.linger_s = linger_s
        self.hidden_env = frozenset(hidden_env)
        self._posix_spawn = descriptors_private and hasattr(os, "posix_spawn")
        self._base_env = _BaseEnvironment(self.hidden_env)
        self._live: dict[int, _Child] = {}
        self._tags: dict[int, str] = {}  # pid -> the RUN_TAG_VAR value of its processes
        self._reaping: set[int] = set()
        # Run tags only need to be unique: a random prefix per runner and a counter.
        self._tag_prefix = f"{secrets.token_hex(8)}-"
        self._serial = itertools.count(1)

    def child_env(self) -> dict[str, str]:
        """The commands' environment: the server's, minus variables that held tokens."""
        return dict(self._base_env.current())

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
        """Run one command to its end. Cancelling the caller kills the command."""
        finished: asyncio.Future[Outcome] = asyncio.get_running_loop().create_future()

        def deliver(outcome: Outcome) -> None:
            if not finished.done():
                finished.set_result(outcome)

        command = self.start(cmd, cmdtyp, cmdusr, on_done=deliver)
        try:
            outcome = await finished
        finally:
            if command is not None:
                command.cancel()  # kills it if we were cancelled; a no-op once it finished
        if isinstance(outcome, Exception):
            raise outcome
        return outcome

    def start(
        self,
        cmd: str,
        cmdtyp: int = 0,
        cmdusr: str = "",
        *,
        on_done: Callable[[Outcome], None],
    ) -> RunningCommand | None:
        """Spawn ``cmd`` now; ``on_done(outcome)`` is called once, from the event loop.

        Returns the running command (whose ``cancel()`` kills it; ``on_done`` is then
        not called), or None when it could not start: ``on_done`` then gets the error
        result soon, never from inside this call.
        """
        loop = asyncio.get_running_loop()
        if "\x00" in cmd:
            # argv is made of C strings: exec would refuse it (Popen raises ValueError).
            _refuse(loop, on_done, 127, "cannot start the command: it contains a NUL character")
            return None
        try:
            argv = self.argv(cmd, cmdtyp)
            identity = _resolve_user(cmdusr)
        except _UserError as exc:
            _refuse(loop, on_done, exc.rc, str(exc))
            return None
        tag = f"{self._tag_prefix}{next(self._serial)}"
        try:
            out_r, out_w = os.pipe()
        except OSError as exc:  # out of descriptors
            _refuse(loop, on_done, 127, f"cannot start {argv[0]}: {exc}")
            return None
        try:
            err_r, err_w = os.pipe()
        except OSError as exc:
            for fd in (out_r, out_w):
                os.close(fd)
            _refuse(loop, on_done, 127, f"cannot start {argv[0]}: {exc}")
            return None
        try:
            proc = self._spawn(argv, identity, tag, out_w, err_w)
        except (OSError, subprocess.SubprocessError) as exc:
            for fd in (out_r, err_r):
                os.close(fd)
            if identity is not None:
                _refuse(loop, on_done, 125, f"cannot switch to user {cmdusr}: {exc}")
                return None
            _refuse(loop, on_done, 127, f"cannot start {argv[0]}: {exc}")
            return None
        finally:
            # The child has its copies; ours would keep the pipes from ever closing.
            os.close(out_w)
            os.close(err_w)
        self._live[proc.pid] = proc
        self._tags[proc.pid] = tag
        try:
            return RunningCommand(self, loop, proc, out_r, err_r, on_done)
        except BaseException:  # could not watch it: do not leave it running unwatched
            for fd in (out_r, err_r):
                with contextlib.suppress(Exception):
                    loop.remove_reader(fd)
                os.close(fd)
            self._kill_everything(proc.pid)
            self._reap(proc)
            raise

    def _environment(self, tag: str, identity: _Identity | None) -> dict[str, str]:
        env = dict(self._base_env.current())
        env[RUN_TAG_VAR] = tag
        if identity is not None:
            env.update(HOME=identity.home, USER=identity.name, LOGNAME=identity.name)
        return env

    def _spawn(
        self, argv: list[str], identity: _Identity | None, tag: str, out_w: int, err_w: int
    ) -> _Child:
        if identity is not None:
            argv = [*_drop_privileges_argv(identity), *argv]
        env = self._environment(tag, identity)
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
                return _SpawnedChild(pid)
        # No preexec_fn, user or group here: those make Python fork() instead of
        # vfork() (see _DROP_AND_EXEC). start_new_session is done in the vfork child.
        return subprocess.Popen(
            argv,
            stdin=_devnull(),
            stdout=out_w,
            stderr=err_w,
            start_new_session=True,
            close_fds=True,
            env=env,
        )

    def _reap(self, proc: _Child) -> int | None:
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
        self._live.pop(proc.pid, None)
        self._tags.pop(proc.pid, None)
        return proc.returncode


def _refuse(
    loop: asyncio.AbstractEventLoop, on_done: Callable[[Outcome], None], rc: int, err: str
) -> None:
    # Soon, not now: a caller that starts the next command from on_done must not recurse.
    loop.call_soon(on_done, ExecResult(rc=rc, out="", err=err))


class RunningCommand:
    """One started command, watched by event-loop callbacks until it ends.

    The stages after the main child exits (see the module docstring): wait up to
    ``linger_s`` for the pipes to close; if they do not, kill the group and wait up to
    ``linger_s`` again; then close our ends, kill the group once more, reap, report.
    At the deadline: kill everything, wait (bounded) for the exit, then the same.
    """

    __slots__ = (
        "_done",
        "_ended",
        "_err",
        "_err_fd",
        "_exited",
        "_loop",
        "_on_done",
        "_out",
        "_out_fd",
        "_pidfd",
        "_proc",
        "_runner",
        "_status",
        "_timed_out",
        "_timer",
        "_unwatched",
        "pid",
    )

    def __init__(
        self,
        runner: CommandRunner,
        loop: asyncio.AbstractEventLoop,
        proc: _Child,
        out_fd: int,
        err_fd: int,
        on_done: Callable[[Outcome], None],
    ) -> None:
        self.pid = proc.pid
        self._runner = runner
        self._loop = loop
        self._proc = proc
        self._on_done = on_done
        self._out = _Capture(runner.output_cap)
        self._err = _Capture(runner.output_cap)
        self._out_fd = out_fd
        self._err_fd = err_fd
        self._pidfd = -1
        self._ended: list[int] = []  # pipes at end of file, still registered
        self._unwatched: list[int] = []  # descriptors no longer watched, not closed yet
        self._exited = False
        self._status: int | None = None
        self._timed_out = False
        self._done = False
        self._timer: asyncio.TimerHandle | None = None
        for fd, capture in ((out_fd, self._out), (err_fd, self._err)):
            os.set_blocking(fd, False)  # our read ends only; the child's ends stay blocking
            loop.add_reader(fd, self._read, fd, capture)
        self._timer = loop.call_later(runner.timeout_s, self._on_deadline)
        self._watch_exit()

    # -- events ----------------------------------------------------------------------

    def _watch_exit(self) -> None:
        try:
            self._pidfd = os.pidfd_open(self.pid)
        except (AttributeError, OSError):  # no pidfd (old kernel): a thread waits instead
            self._pidfd = -1
        if self._pidfd >= 0:
            self._loop.add_reader(self._pidfd, self._on_exit)
            return
        pid, loop, on_exit = self.pid, self._loop, self._on_exit

        def wait_without_reaping() -> None:
            with contextlib.suppress(ChildProcessError):
                os.waitid(os.P_PID, pid, os.WEXITED | os.WNOWAIT)
            with contextlib.suppress(RuntimeError):  # the loop may be closed at shutdown
                loop.call_soon_threadsafe(on_exit)

        threading.Thread(
            target=wait_without_reaping, name=f"remsvc-wait-{pid}", daemon=True
        ).start()

    def _read(self, fd: int, capture: _Capture) -> None:
        if self._drain(fd, capture):
            self._pipe_ended(fd)

    @staticmethod
    def _drain(fd: int, capture: _Capture) -> bool:
        """Read what the pipe holds; True at end of file."""
        # After a chunk, read once more: a command that printed and exited has usually
        # closed the pipe already, and seeing that now saves a loop turn.
        for _ in range(2):
            try:
                chunk = os.read(fd, _READ_SIZE)
            except BlockingIOError:
                return False
            except OSError:
                return True
            if not chunk:
                return True
            capture.add(chunk)
        return False

    def _pipe_ended(self, fd: int) -> None:
        if fd == self._out_fd:
            self._out_fd = -1
            other, capture = self._err_fd, self._err
        else:
            self._err_fd = -1
            other, capture = self._out_fd, self._out
        ended = [fd]
        # The pipes of an exiting command end together: look at the other one now
        # rather than in a callback of its own.
        if other >= 0 and self._drain(other, capture):
            self._out_fd = self._err_fd = -1
            ended.append(other)
        self._ended.extend(ended)  # still registered with the loop; see below
        if self._out_fd < 0 and self._err_fd < 0:
            if self._exited:
                self._finish()
            elif self._exit_status() is not None:
                # The child has usually exited by now: finish without waiting a loop
                # turn for the pidfd to say so.
                self._on_exit()
            if self._done:
                return  # _release unregistered the pipes, after the next command started
        # Back to the loop: stop watching what ended (end of file stays readable).
        for done in ended:
            self._loop.remove_reader(done)
            self._ended.remove(done)
            self._unwatched.append(done)

    def _on_exit(self) -> None:
        if self._done or self._exited:
            return
        self._exited = True
        self._cancel_timer()
        if self._out_fd < 0 and self._err_fd < 0:
            self._finish()
            return
        self._drop_pidfd()  # it stays readable: stop watching it while we wait
        if self._timed_out:
            # The leader is a zombie now (not reaped), so its group id is still ours.
            _kill_group(self.pid)
            self._timer = self._loop.call_later(self._runner.linger_s, self._finish)
        else:
            self._timer = self._loop.call_later(self._runner.linger_s, self._linger_over)

    def _exit_status(self) -> int | None:
        if self._status is None:
            self._status = _exit_status(self.pid)
        return self._status

    def _linger_over(self) -> None:
        # Leftovers still hold the pipes: kill the group. Killed members close their
        # ends at once; only a process that left the group (setsid) could hold a pipe
        # now, and it does not get to stall us past one more linger.
        self._timer = None
        _kill_group(self.pid)
        self._timer = self._loop.call_later(self._runner.linger_s, self._finish)

    def _on_deadline(self) -> None:
        self._timer = None
        self._timed_out = True
        self._runner._kill_everything(self.pid)
        self._timer = self._loop.call_later(_AFTER_KILL_S, self._finish)

    # -- endings ---------------------------------------------------------------------

    def _finish(self) -> None:
        if self._done:
            return
        self._done = True
        self._cancel_timer()
        outcome: Outcome
        try:
            if self._timed_out:
                outcome = ExecResult(rc=1, out="", err=TIMED_OUT, pid=self.pid, timed_out=True)
            else:
                # Read without reaping: cheap, and the pid stays reserved as our group id.
                returncode = self._exit_status()
                if returncode is None:  # pragma: no cover - its exit was seen
                    returncode = -signal.SIGKILL
                outcome = ExecResult(
                    rc=_exit_code(returncode),
                    out=self._out.text(),
                    err=self._err.text(),
                    pid=self.pid,
                )
        except Exception as exc:  # a bug here must not lose the command: report it
            outcome = exc
        try:
            # The service starts the stream's next command in here. The cleanup below
            # (closing, killing leftovers, reaping: tens of µs of system calls) is not
            # something that command needs to wait for; the result is only queued by
            # then, and goes out after the leftovers were killed.
            self._on_done(outcome)
        finally:
            self._release()
            _kill_group(self.pid)  # leftovers that closed their pipes
            self._runner._reap(self._proc)

    def cancel(self) -> None:
        """Kill the command and everything it started (client gone, shutdown)."""
        if self._done:
            return
        self._done = True
        self._release()
        # Not reaped yet, so the pid is still reserved as the group id.
        self._runner._kill_everything(self.pid)
        self._runner._reap(self._proc)

    def _cancel_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _drop_pidfd(self) -> None:
        if self._pidfd >= 0:
            self._loop.remove_reader(self._pidfd)
            os.close(self._pidfd)
            self._pidfd = -1

    def _release(self) -> None:
        self._cancel_timer()
        self._drop_pidfd()
        for fd in (self._out_fd, self._err_fd):
            if fd >= 0:
                self._loop.remove_reader(fd)
                os.close(fd)
        self._out_fd = self._err_fd = -1
        for fd in self._ended:
            self._loop.remove_reader(fd)
            os.close(fd)
        for fd in self._unwatched:
            os.close(fd)
        self._ended.clear()
        self._unwatched.clear()


def _exit_status(pid: int) -> int | None:
    """An exited child's status, Popen-style (-N: killed by signal N), without reaping it;
    None while it runs."""
    try:
        info = os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT)
    except ChildProcessError:  # pragma: no cover - reaped by someone else
        return None
    if info is None or info.si_pid == 0:
        return None
    return info.si_status if info.si_code == os.CLD_EXITED else -info.si_status


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
