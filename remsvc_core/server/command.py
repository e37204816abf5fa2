"""One running command, from its start to its result: pipes, exit, linger, deadline.

How a command ends, and what is left behind:

* **Timeout, cancellation, shutdown:** the whole process group is killed with SIGKILL
  (the shell, its children and grandchildren), and so is every process that left the
  group (see :mod:`remsvc_core.server.killing`). After a timeout the partial output is
  discarded, as upstream does.
* **Normal exit:** the main child's exit is noticed *without reaping it* (pidfd, or
  ``waitid(WNOWAIT)``), so its pid — which is also the group id — cannot be recycled.
  The command then waits up to ``linger_s`` for the pipes to close (background jobs
  that still hold them get that long to finish), kills whatever is left in the
  group, and only then reaps. Nothing the command started stays running, and a
  forgotten ``sleep 1000 &`` delays the response by ``linger_s`` at most. A process
  that left the group on purpose (``setsid``) from a command that finished by itself
  is left alone (a command may start a service on purpose); our end of its pipes is
  closed.

Why it is written as event-loop callbacks rather than coroutines: a server runs a
command per request, often thousands in a row, and the event loop is the server's
only thread. The pidfd and both pipes are watched with ``loop.add_reader`` and the
deadline with one timer, so noticing the end of a command and handing its result on
(``on_done``) happens in the same loop turn as the child's exit, with no transports,
tasks or ``asyncio.wait`` in between. The service uses that to start the stream's
next command right there, before it sends the previous result.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import functools
import os
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from remsvc_core.server.capture import CLASSIC_CAP, OutputCapture, read_pipe
from remsvc_core.server.children import Children
from remsvc_core.server.exits import exit_code, exit_status, reap_with_usage
from remsvc_core.server.killing import kill_group
from remsvc_core.server.outcome import TIMED_OUT, ExecResult, Outcome, ResourceUsage
from remsvc_core.server.spawn import Spawned

__all__ = ["DEFAULT_LINGER_S", "CommandLimits", "RunningCommand", "Stage"]

# How long a normally finished command's leftovers may keep its pipes open.
DEFAULT_LINGER_S = 0.5
# Bounds for things that should take microseconds once SIGKILL was sent.
_AFTER_KILL_S = 5.0


@dataclass(frozen=True)
class CommandLimits:
    """What every command of a runner is held to."""

    output_cap: int
    timeout_s: float
    linger_s: float = DEFAULT_LINGER_S


class Stage(enum.Enum):
    """Where a :class:`RunningCommand` is in its life; each stage arms at most one timer.

    ====================  ===========================================  ====================
    stage                 what is going on                             its timer leads to
    ====================  ===========================================  ====================
    RUNNING               the main child runs                          TIMED_OUT (deadline)
    EXITED                it exited by itself; leftovers still hold    LEFTOVERS_KILLED
                          the pipes and get ``linger_s``
    LEFTOVERS_KILLED      the group was killed; the pipes get one      DONE (report)
                          more ``linger_s`` (only a process that left
                          the group can hold them now)
    TIMED_OUT             the deadline passed and everything was       DONE (report)
                          killed; waiting (bounded) for the exit
    TIMED_OUT_EXITED      ...it exited; the pipes get ``linger_s``     DONE (report)
    DONE                  reported, or cancelled: nothing is watched   -
    ====================  ===========================================  ====================

    Both pipes at end of file after the exit lead to DONE from any stage; ``cancel()``
    leads to DONE from any stage, without a report.
    """

    RUNNING = "running"
    EXITED = "exited"
    LEFTOVERS_KILLED = "leftovers killed"
    TIMED_OUT = "timed out"
    TIMED_OUT_EXITED = "timed out, exited"
    DONE = "done"


_RUNNING = Stage.RUNNING
_TIMED_OUT = Stage.TIMED_OUT
_DONE = Stage.DONE
# The main child's exit was seen (and handled) in these.
_EXITED_STAGES = frozenset({Stage.EXITED, Stage.LEFTOVERS_KILLED, Stage.TIMED_OUT_EXITED})
# The result of a command that ends in these is the timeout result.
_TIMED_OUT_STAGES = frozenset({Stage.TIMED_OUT, Stage.TIMED_OUT_EXITED})


class RunningCommand:
    """One started command, watched by event-loop callbacks until it ends (see :class:`Stage`).

    ``on_done(outcome)`` is called once, from the event loop, unless :meth:`cancel`
    comes first. ``children`` is where its process is registered; it kills and reaps.

    With ``on_output(fd, data)``, output within the cap is handed on as it is read (fd
    1 stdout, 2 stderr) instead of being kept; :meth:`pause_output` stops reading the
    pipes (the child then blocks writing, as with any slow reader) until
    :meth:`resume_output`. With ``want_usage``, the result carries what the command
    cost (:class:`~remsvc_core.server.outcome.ResourceUsage`).
    """

    __slots__ = (
        "_child",
        "_children",
        "_ended",
        "_err",
        "_err_fd",
        "_limits",
        "_loop",
        "_on_done",
        "_out",
        "_out_fd",
        "_paused",
        "_pidfd",
        "_stage",
        "_started",
        "_status",
        "_timer",
        "_unwatched",
        "_want_usage",
        "pid",
    )

    def __init__(
        self,
        spawned: Spawned,
        limits: CommandLimits,
        children: Children,
        loop: asyncio.AbstractEventLoop,
        on_done: Callable[[Outcome], None],
        on_output: Callable[[int, bytes], None] | None = None,
        want_usage: bool = False,
    ) -> None:
        # A classic result must fit one message; live output is sent as it comes.
        cap = limits.output_cap if on_output is not None else min(limits.output_cap, CLASSIC_CAP)
        self.pid = spawned.child.pid
        self._started = time.monotonic()
        self._want_usage = want_usage
        self._paused = False
        self._child = spawned.child
        self._children = children
        self._limits = limits
        self._loop = loop
        self._on_done = on_done
        self._out = OutputCapture(cap, functools.partial(on_output, 1) if on_output else None)
        self._err = OutputCapture(cap, functools.partial(on_output, 2) if on_output else None)
        self._out_fd = spawned.out_fd
        self._err_fd = spawned.err_fd
        self._pidfd = -1
        self._ended: list[int] = []  # pipes at end of file, still registered
        self._unwatched: list[int] = []  # descriptors no longer watched, not closed yet
        self._stage = _RUNNING
        self._status: int | None = None
        self._timer: asyncio.TimerHandle | None = None
        for fd, capture in ((self._out_fd, self._out), (self._err_fd, self._err)):
            os.set_blocking(fd, False)  # our read ends only; the child's ends stay blocking
            loop.add_reader(fd, self._read, fd, capture)
        self._timer = loop.call_later(limits.timeout_s, self._on_deadline)
        self._watch_exit()

    @property
    def stage(self) -> Stage:
        return self._stage

    def pause_output(self) -> None:
        """Stop reading the pipes until :meth:`resume_output` (a reader is behind)."""
        if self._paused or self._stage is _DONE:
            return
        self._paused = True
        for fd in (self._out_fd, self._err_fd):
            if fd >= 0:
                self._loop.remove_reader(fd)

    def resume_output(self) -> None:
        if not self._paused:
            return
        self._paused = False
        if self._stage is _DONE:
            return
        for fd, capture in ((self._out_fd, self._out), (self._err_fd, self._err)):
            if fd >= 0:
                self._loop.add_reader(fd, self._read, fd, capture)

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

    def _read(self, fd: int, capture: OutputCapture) -> None:
        if read_pipe(fd, capture):
            self._pipe_ended(fd)

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
        if other >= 0 and read_pipe(other, capture):
            self._out_fd = self._err_fd = -1
            ended.append(other)
        self._ended.extend(ended)  # still registered with the loop; see below
        if self._out_fd < 0 and self._err_fd < 0:
            if self._stage in _EXITED_STAGES:
                self._finish()
            elif self._exit_status() is not None:
                # The child has usually exited by now: finish without waiting a loop
                # turn for the pidfd to say so.
                self._on_exit()
            if self._stage is _DONE:
                return  # _release unregistered the pipes, after the next command started
        # Back to the loop: stop watching what ended (end of file stays readable).
        for done in ended:
            self._loop.remove_reader(done)
            self._ended.remove(done)
            self._unwatched.append(done)

    def _on_exit(self) -> None:
        if self._stage is _RUNNING:
            self._stage = Stage.EXITED
        elif self._stage is _TIMED_OUT:
            self._stage = Stage.TIMED_OUT_EXITED
        else:
            return  # done, or its exit was handled already
        self._cancel_timer()
        if self._out_fd < 0 and self._err_fd < 0:
            self._finish()
            return
        self._drop_pidfd()  # it stays readable: stop watching it while we wait
        if self._stage is Stage.TIMED_OUT_EXITED:
            # The leader is a zombie now (not reaped), so its group id is still ours.
            kill_group(self.pid)
            self._timer = self._loop.call_later(self._limits.linger_s, self._finish)
        else:
            self._timer = self._loop.call_later(self._limits.linger_s, self._linger_over)

    def _exit_status(self) -> int | None:
        if self._status is None:
            self._status = exit_status(self.pid)
        return self._status

    def _linger_over(self) -> None:
        # Leftovers still hold the pipes: kill the group. Killed members close their
        # ends at once; only a process that left the group (setsid) could hold a pipe
        # now, and it does not get to stall us past one more linger.
        self._timer = None
        if self._paused:
            # The pipes are full because nobody reads them, not because of leftovers:
            # what is in them is output, and it waits for the reader.
            self._timer = self._loop.call_later(self._limits.linger_s, self._linger_over)
            return
        self._stage = Stage.LEFTOVERS_KILLED
        kill_group(self.pid)
        self._timer = self._loop.call_later(self._limits.linger_s, self._finish)

    def _on_deadline(self) -> None:
        self._timer = None
        self._stage = _TIMED_OUT
        self._children.kill(self.pid)
        self._timer = self._loop.call_later(_AFTER_KILL_S, self._finish)

    # -- endings ---------------------------------------------------------------------

    def _finish(self) -> None:
        if self._stage is _DONE:
            return
        timed_out = self._stage in _TIMED_OUT_STAGES
        self._stage = _DONE
        self._cancel_timer()
        outcome: Outcome
        try:
            if timed_out:
                outcome = ExecResult(rc=1, out="", err=TIMED_OUT, pid=self.pid, timed_out=True)
            else:
                # Read without reaping: cheap, and the pid stays reserved as our group id.
                returncode = self._exit_status()
                if returncode is None:  # pragma: no cover - its exit was seen
                    returncode = -signal.SIGKILL
                out, err = self._out, self._err
                outcome = ExecResult(
                    rc=exit_code(returncode),
                    out=out.text(),
                    err=err.text(),
                    pid=self.pid,
                    streamed=out.forward is not None,
                    out_size=out.size,
                    err_size=err.size,
                    out_truncated=out.truncated,
                    err_truncated=err.truncated,
                    usage=self._usage() if self._want_usage else None,
                    signal=-returncode if returncode < 0 else None,
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
            kill_group(self.pid)  # leftovers that closed their pipes
            self._children.reap(self._child)

    def _usage(self) -> ResourceUsage | None:
        # Leftovers in the group are killed first, while the pid still names the group.
        kill_group(self.pid)
        return reap_with_usage(self._child, self._started)

    def cancel(self) -> None:
        """Kill the command and everything it started (client gone, shutdown)."""
        if self._stage is _DONE:
            return
        self._stage = _DONE
        self._release()
        # Not reaped yet, so the pid is still reserved as the group id.
        self._children.kill(self.pid)
        self._children.reap(self._child)

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
