"""``run_fleet``: the same batch on many hosts, with rate control and an error budget.

Each host is one :func:`~remsvc_core.engine.run_commands` stream, so everything a
single stream does (retries before sending, durable batches, live output, every
result kept) holds per host. On top of that:

- at most ``max_concurrency`` hosts run at once; a host starts as soon as another
  ends, so one slow or unreachable host holds up nothing but its own slot;
- once ``max_errors`` hosts have failed, no new host starts; the hosts already
  running finish, and the rest are reported as not started (never as failures);
- each host's channel is closed when its stream ends (unless something else opened
  it or uses it), so memory follows the hosts running at once, not the fleet's size.

Hosts are started in the order given, and reported in that order.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import re
from collections.abc import Callable, Collection, Hashable, Iterable, Sequence
from typing import Any

from remsvc_core import channels
from remsvc_core.commands import Command, as_batch
from remsvc_core.engine import DEFAULT_HEARTBEAT_S, run_commands
from remsvc_core.extensions import check_batch_key
from remsvc_core.fleet.budget import DEFAULT_MAX_CONCURRENCY, FleetLimits, fleet_limits
from remsvc_core.fleet.outcome import FAILED, SUCCESS, FleetOutcome, HostRun
from remsvc_core.fleet.targets import FleetTarget, fleet_targets
from remsvc_core.results import StreamOutcome
from remsvc_core.retry import RetryPolicy
from remsvc_core.settings import check_timeout
from remsvc_core.synchronous import synchronous
from remsvc_core.verdict import DEFAULT_ACCEPTED_RCS, judge

__all__ = ["host_batch_key", "run_fleet", "run_fleet_sync"]

log = logging.getLogger("remsvc_core.fleet")

#: The longest batch key the protocol allows (docs/protocol-extensions.md).
_MAX_KEY = 200
_KEY_CHARS = re.compile(r"[^A-Za-z0-9._:/-]+")

HostHooks = Callable[[str], Sequence[object]]
HostDone = Callable[[HostRun], None]


def host_batch_key(fleet_key: str, host: str) -> str:
    """The batch key of ``host``'s batch in a fan-out keyed ``fleet_key``.

    Different for every host label (two labels may name one server), the same every
    time for the same pair (so a fan-out run again re-attaches host by host), and
    within the protocol's 200 characters however long the fleet key.
    """
    digest = hashlib.sha256(host.encode("utf-8", "surrogatepass")).hexdigest()[:16]
    readable = _KEY_CHARS.sub("_", host)[:24]
    suffix = f":host:{readable}:{digest}"
    if len(fleet_key) + len(suffix) > _MAX_KEY:
        whole = hashlib.sha256(fleet_key.encode()).hexdigest()[:16]
        fleet_key = f"{fleet_key[: _MAX_KEY - len(suffix) - len(whole) - 1]}.{whole}"
    return f"{fleet_key}{suffix}"


async def run_fleet(
    commands: Any,
    targets: Any,
    *,
    max_concurrency: int | str = DEFAULT_MAX_CONCURRENCY,
    max_errors: int | str | None = None,
    success_threshold: int | str | None = None,
    accepted_rcs: Collection[int] = DEFAULT_ACCEPTED_RCS,
    stream_timeout: float = 3600.0,
    metadata: Iterable[tuple[str, str]] = (),
    hooks: Sequence[object] = (),
    host_hooks: HostHooks | None = None,
    on_host_done: HostDone | None = None,
    retry: RetryPolicy | None = None,
    default_src: str = "",
    batch_key: str | None = None,
    follow: bool = False,
    heartbeat_s: float | None = DEFAULT_HEARTBEAT_S,
    usage: bool = False,
    spill_dir: str | os.PathLike[str] | None = None,
    spill_bytes: int | None = None,
) -> FleetOutcome:
    """Run one batch on every host of ``targets`` and return what each host gave.

    ``targets``: :class:`~remsvc_core.settings.ChannelSettings`, ``remsvc://``
    connection URIs, ``(label, settings_or_uri)`` pairs, or a mapping of labels to
    either (see :func:`~remsvc_core.fleet.targets.fleet_targets`); the label keys each
    host's results.

    Rate control: at most ``max_concurrency`` hosts run at once (default 50). Once
    ``max_errors`` hosts have failed (a count, or a percentage of hosts such as
    ``"10%"``), no new host starts; the running ones finish, and the rest are
    ``NOT_STARTED``. A host fails when its stream falls short or a command's exit code
    is not in ``accepted_rcs`` (default ``{0}``; a handler pipeline's
    ``accepted_rcs``). ``success_threshold`` (a count or a percentage; default: every
    host) is how many hosts must succeed for the run to succeed: see
    :func:`~remsvc_core.fleet.verdict.judge_fleet`.

    Each host's stream takes :func:`~remsvc_core.engine.run_commands`'s options:
    ``stream_timeout`` bounds each host's stream, ``metadata``, ``retry``,
    ``follow``, ``heartbeat_s``, ``usage``, ``spill_dir``, ``spill_bytes``. ``hooks``
    are plugin objects given to every host's stream; ``host_hooks(label)`` returns more
    for one host's stream (a :class:`~remsvc_core.watch.StreamWatch` with ``host=label``,
    say). ``batch_key`` names the whole fan-out: each host's batch is kept under
    :func:`host_batch_key` of it, so running the fan-out again re-attaches host by
    host. ``on_host_done(run)`` is called on the loop as each host ends; keep it quick.

    Raises :class:`~remsvc_core.errors.CommandValidationError` or
    :class:`~remsvc_core.errors.SettingsError` for bad input, before anything is sent.
    A host that fails never raises: its run says how it ended.
    """
    batch = as_batch(commands, default_src=default_src)
    hosts = fleet_targets(targets)
    limits = fleet_limits(
        len(hosts),
        max_concurrency=max_concurrency,
        max_errors=max_errors,
        success_threshold=success_threshold,
    )
    check_timeout(stream_timeout)
    if batch_key is not None:
        check_batch_key(batch_key)
    options: dict[str, Any] = {
        "stream_timeout": stream_timeout,
        "metadata": tuple(metadata),
        "retry": retry,
        "follow": follow,
        "heartbeat_s": heartbeat_s,
        "usage": usage,
        "spill_dir": spill_dir,
        "spill_bytes": spill_bytes,
    }
    fan_out = _FanOut(batch, hosts, limits, frozenset(accepted_rcs), options, batch_key)
    return await fan_out.run(hooks, host_hooks, on_host_done)


run_fleet_sync = synchronous(
    run_fleet,
    doc=""":func:`run_fleet` for code without an event loop (scripts, the CLI, notebooks).

    Same arguments and result. Inside a thread whose event loop is already running
    (Jupyter), the fan-out runs on a fresh loop in a worker thread.
    """,
)


class _FanOut:
    """One run_fleet call: which hosts run, which wait, and what each gave."""

    def __init__(
        self,
        batch: list[Command],
        hosts: list[FleetTarget],
        limits: FleetLimits,
        accepted: frozenset[int],
        options: dict[str, Any],
        batch_key: str | None,
    ) -> None:
        self.batch = batch
        self.hosts = hosts
        self.limits = limits
        self.accepted = accepted
        self.options = options
        self.batch_key = batch_key
        self.runs = [HostRun(host=target.host, target=target.settings.target) for target in hosts]
        self.failed = 0
        # Channels open before the fan-out belong to someone else (another task in the
        # same triggerer): they stay open; those the fan-out opens close as hosts end.
        self.kept_channels: set[Hashable] = set()

    async def run(
        self, hooks: Sequence[object], host_hooks: HostHooks | None, on_host_done: HostDone | None
    ) -> FleetOutcome:
        loop = asyncio.get_running_loop()
        started = loop.time()
        limits = self.limits
        log.info(
            "fan-out: %d command(s) to %d host(s), at most %d at once%s",
            len(self.batch),
            limits.hosts,
            limits.max_concurrency,
            f", no new host once {limits.max_errors} failed" if limits.max_errors else "",
        )
        self.kept_channels = {
            target.settings.channel_key()
            for target in self.hosts
            if channels.cached_channel(target.settings) is not None
        }
        running: dict[asyncio.Task[StreamOutcome], int] = {}
        waiting = iter(range(len(self.hosts)))
        try:
            while True:
                while len(running) < limits.max_concurrency and not self._budget_spent():
                    index = next(waiting, None)
                    if index is None:
                        break
                    extra = list(host_hooks(self.hosts[index].host)) if host_hooks else []
                    task = loop.create_task(
                        self._one(index, [*hooks, *extra]), name=f"remsvc-fleet-{index}"
                    )
                    running[task] = index
                if not running:
                    break
                done, _ = await asyncio.wait(running, return_when=asyncio.FIRST_COMPLETED)
                for task in done:
                    self._record(running.pop(task), task.result(), on_host_done)
        finally:
            # Cancelled (or a hook of ours raised): stop every stream still open.
            for task in running:
                task.cancel()
            if running:
                await asyncio.gather(*running, return_exceptions=True)
        outcome = FleetOutcome(
            commands=self.batch,
            hosts=self.runs,
            max_concurrency=limits.max_concurrency,
            max_errors=limits.max_errors,
            required=limits.required,
            elapsed_s=loop.time() - started,
        )
        log.log(
            logging.INFO if not self.failed else logging.WARNING,
            "fan-out ended after %.3fs: %d succeeded, %d failed, %d not started",
            outcome.elapsed_s,
            len(outcome.in_state(SUCCESS)),
            self.failed,
            len(self.hosts) - len(outcome.in_state(SUCCESS)) - self.failed,
        )
        return outcome

    def _budget_spent(self) -> bool:
        budget = self.limits.max_errors
        return budget is not None and self.failed >= budget

    async def _one(self, index: int, hooks: list[object]) -> StreamOutcome:
        target = self.hosts[index]
        settings = target.settings
        key = None if self.batch_key is None else host_batch_key(self.batch_key, target.host)
        try:
            return await run_commands(
                self.batch, settings, hooks=hooks, batch_key=key, **self.options
            )
        except Exception as exc:
            # Bad input for one host's stream (its hooks, say): that host failed, and
            # the others' results are kept.
            log.error("fan-out: host %s could not start: %s", target.host, exc)
            return StreamOutcome(
                commands=list(self.batch),
                status_code="UNKNOWN",
                status_details=f"the client could not run this host's stream: "
                f"{type(exc).__name__}: {exc}",
                target=settings.target,
            )
        finally:
            # Unless another host's stream still uses it (two labels, one server).
            if settings.channel_key() not in self.kept_channels:
                await channels.close_channel_if_idle(settings)

    def _record(self, index: int, outcome: StreamOutcome, on_host_done: HostDone | None) -> None:
        run = self.runs[index]
        run.outcome = outcome
        run.state = SUCCESS if judge(outcome, self.accepted).ok else FAILED
        if run.state == FAILED:
            self.failed += 1
            if self._budget_spent() and self.failed == self.limits.max_errors:
                log.warning(
                    "fan-out: %d host(s) failed (max_errors): no new host starts",
                    self.failed,
                )
        if on_host_done is not None:
            on_host_done(run)
