"""Start and stop the reference server: :func:`start_server` and the blocking :func:`serve`.

Shutting down drains: the server stops taking calls and new commands, gives running
commands ``drain_grace_s`` to finish (their results are still sent), then kills every
remaining process group and reaps every child before returning.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import tempfile

import grpc
from grpc import aio

from remsvc_core.errors import ServerConfigError
from remsvc_core.server.audit import AuditLog
from remsvc_core.server.auth import caller_interceptors
from remsvc_core.server.batch_registry import BatchRegistry
from remsvc_core.server.config import ServerConfig, is_loopback_host
from remsvc_core.server.grpc_options import server_options
from remsvc_core.server.hardening import Protection, protect_process
from remsvc_core.server.health import OPEN_METHODS, REMSVC, HealthService, add_standard_services
from remsvc_core.server.journal import Journal
from remsvc_core.server.limits import Limits
from remsvc_core.server.logs import BackgroundLog, FileLog, server_stderr_log
from remsvc_core.server.policy import CommandPolicy
from remsvc_core.server.runner import CommandRunner
from remsvc_core.server.service import RemSvcExtService, RemSvcService
from remsvc_core.server.startup_notes import log_startup_notes
from remsvc_core.wire import pb_grpc

__all__ = ["RunningServer", "format_target", "serve", "start_server"]

log = logging.getLogger("remsvc.server")


def format_target(host: str, port: int) -> str:
    """``host:port``, with brackets around an IPv6 address."""
    host = host.strip("[]")
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


class _Files:
    """What the server writes besides stderr: ``[log] file`` and the audit log."""

    def __init__(self, config: ServerConfig, process_log: BackgroundLog | None) -> None:
        self.log = (
            FileLog(config.log_file, config.source, log, process_log) if config.log_file else None
        )
        self.audit = AuditLog(None)
        try:
            self.audit = AuditLog(
                config.audit_file,
                include_command=config.audit_include_command,
                source=config.source,
            )
        except BaseException:
            self.close()
            raise

    def reopen(self) -> None:
        """Open both files' paths again (rotation); blocking, so not on the event loop."""
        if self.log is not None:
            self.log.reopen()
        self.audit.reopen()

    def close(self) -> None:
        """Write out what is pending and close them."""
        if self.log is not None:
            self.log.close()
            self.log = None
        self.audit.close()


class RunningServer:
    """A started server. ``port`` is the bound one (useful with port 0)."""

    def __init__(
        self,
        config: ServerConfig,
        server: aio.Server,
        service: RemSvcService,
        port: int,
        files: _Files,
        health: HealthService,
    ) -> None:
        self.config = config
        self.port = port
        self._server = server
        self._service = service
        self._files = files
        self._health = health
        self._stopped = False
        self.restore_log_level: int | None = None

    @property
    def target(self) -> str:
        host = self.config.host
        # A wildcard address is reachable through loopback, which is what callers here want.
        if host in ("0.0.0.0", ""):
            host = "127.0.0.1"
        elif host in ("::", "[::]"):
            host = "::1"
        return format_target(host, self.port)

    @property
    def commands_run(self) -> int:
        return self._service.commands_run

    @property
    def running_pids(self) -> list[int]:
        """Pids of commands running right now (each is also its process group id)."""
        return self._service.runner.live_pids

    async def stop(self, grace: float | None = None) -> None:
        """Drain, then kill what is left. ``grace`` defaults to the config's drain grace."""
        if self._stopped:
            await self._server.wait_for_termination()
            return
        self._stopped = True
        grace = self.config.drain_grace_s if grace is None else grace
        self._service.draining = True
        self._health.start_draining()
        log.info("stopping: draining running commands for up to %.1fs", grace)
        await self._server.stop(grace)
        if self._service.batches is not None:
            self._service.batches.stop_all()
        runner = self._service.runner
        if runner.live_pids:
            log.warning(
                "killing %d command(s) still running after the drain", len(runner.live_pids)
            )
        runner.kill_all()
        if not await runner.wait_idle(5.0):
            log.error("children not reaped after shutdown: %s", runner.live_pids)
        log.info("stopped (%d commands run)", self._service.commands_run)
        self._files.close()
        if self.restore_log_level is not None:
            log.setLevel(self.restore_log_level)

    def reopen_files(self) -> None:
        """Reopen ``[log] file`` and the audit log (after rotation). Blocking: call it
        in a worker thread."""
        self._files.reopen()

    async def wait(self) -> None:
        """Return when the server has terminated."""
        await self._server.wait_for_termination()


def _credentials(config: ServerConfig) -> grpc.ServerCredentials:
    def read(key: str, path: str | None) -> bytes:
        assert path is not None
        try:
            with open(path, "rb") as handle:
                return handle.read()
        except OSError as exc:
            raise ServerConfigError(
                f"{config.source}: [tls] {key}: cannot read {path!r}: {exc}"
            ) from None

    pair = (read("key", config.tls_key), read("cert", config.tls_cert))
    ca = read("ca", config.tls_ca) if config.tls_ca else None
    return grpc.ssl_server_credentials(
        [pair], root_certificates=ca, require_client_auth=ca is not None
    )


def _detach(background: BackgroundLog | None, logger: logging.Logger = log) -> None:
    if background is not None:
        logger.removeHandler(background.handler)
        background.close()


async def start_server(config: ServerConfig | None = None) -> RunningServer:
    """Check ``config``, bind and start; raises :class:`ServerConfigError` if it cannot."""
    return await _start_server(config or ServerConfig())


async def _start_server(
    config: ServerConfig,
    *,
    descriptors_private: bool = False,
    process_log: BackgroundLog | None = None,
) -> RunningServer:
    config.validate()
    files = _Files(config, process_log)
    # The logger is process-wide: an embedded server puts its level back on stop, so
    # one server's log_level does not silence the next one's warnings.
    previous_level = log.level
    log.setLevel(config.log_level_number)
    try:
        running = await _start(config, files, descriptors_private)
    except BaseException:
        log.setLevel(previous_level)
        files.close()
        raise
    running.restore_log_level = previous_level
    return running


async def _start(config: ServerConfig, files: _Files, descriptors_private: bool) -> RunningServer:
    log_startup_notes(config, log)
    policy = CommandPolicy.from_config(config)
    runner = CommandRunner(
        output_cap=config.output_cap_bytes,
        timeout_s=config.cmd_timeout_ms / 1000.0,
        hidden_env=config.hidden_env,
        descriptors_private=descriptors_private,
    )
    batches = _batches(config, runner, policy)
    service = RemSvcService(
        runner,
        policy,
        max_parallel=config.max_parallel,
        audit=files.audit,
        extensions=config.extensions,
        batches=batches,
        idle_timeout_s=config.idle_stream_timeout_s,
        limits=Limits(config),
    )
    if batches is not None:
        batches.admit_through(service)
    interceptors = caller_interceptors(config, open_methods=OPEN_METHODS)
    server = aio.server(interceptors=interceptors, options=server_options(config))
    pb_grpc.add_RemSvcServicer_to_server(service, server)
    pb_grpc.add_RemSvcExtServicer_to_server(RemSvcExtService(batches), server)
    health = add_standard_services(server, [REMSVC])
    address = format_target(config.host, config.port)
    try:
        if config.tls_enabled:
            port = server.add_secure_port(address, _credentials(config))
        else:
            port = server.add_insecure_port(address)
    except RuntimeError as exc:
        port = 0
        reason = str(exc)
    else:
        reason = "address in use or not available"
    if not port:
        await server.stop(None)
        raise ServerConfigError(
            f"{config.source}: [server] host/port: cannot listen on {address} ({reason})"
        )
    await server.start()
    if config.auth and not config.tls_enabled and not is_loopback_host(config.host):
        log.warning(
            "bearer tokens are accepted in PLAINTEXT on %s (allow_insecure_auth = true)", address
        )
    log.info(
        "listening on %s (%s%s, auth: %s, max_parallel=%d, cmd_timeout_ms=%d, output_cap_bytes=%d)",
        format_target(config.host, port),
        "TLS" if config.tls_enabled else "plaintext",
        ", client certificates required" if config.tls_ca else "",
        ", ".join(config.identities) if config.auth else "off",
        config.max_parallel,
        config.cmd_timeout_ms,
        config.output_cap_bytes,
    )
    return RunningServer(config, server, service, port, files, health)


def _batches(
    config: ServerConfig, runner: CommandRunner, policy: CommandPolicy
) -> BatchRegistry | None:
    """Kept batches, when ``[batches] state_dir`` is set and batch/1 is offered."""
    if config.batch_state_dir is None or "batch/1" not in config.extensions:
        return None
    try:
        journal = Journal(
            config.batch_state_dir,
            max_bytes=config.batch_max_bytes,
            expire_s=config.batch_expire_s,
        )
    except OSError as exc:
        raise ServerConfigError(
            f"{config.source}: [batches] state_dir: cannot use {config.batch_state_dir!r}: {exc}"
        ) from None
    return BatchRegistry(
        journal, runner, grace_s=config.batch_grace_s, max_parallel=config.max_parallel
    )


def _write_port_file(path: str, port: int) -> None:
    # Write then rename, so a reader never sees a half-written number.
    directory = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=".port-")
    with os.fdopen(fd, "w") as handle:
        handle.write(f"{port}\n")
    os.replace(tmp, path)


async def _serve(
    config: ServerConfig,
    port_file: str | None,
    process_log: BackgroundLog | None,
    protection: Protection,
) -> None:
    running = await _start_server(
        config, descriptors_private=_close_descriptors_on_exec(), process_log=process_log
    )
    _log_protection(protection)
    loop = asyncio.get_running_loop()
    stop_requested = asyncio.Event()
    signals_seen = 0

    def on_signal(signum: int) -> None:
        nonlocal signals_seen
        signals_seen += 1
        log.info("received %s", signal.Signals(signum).name)
        if signals_seen == 1:
            stop_requested.set()
        else:
            log.warning("second signal: killing running commands now")
            running._service.runner.kill_all()

    def on_hangup() -> None:
        log.info("received SIGHUP: reopening the log and audit files")
        # Closing a file writes out what is buffered: not on the event loop.
        loop.run_in_executor(None, running.reopen_files)

    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, on_signal, signum)
    loop.add_signal_handler(signal.SIGHUP, on_hangup)
    try:
        if port_file:
            _write_port_file(port_file, running.port)
        waiter = asyncio.create_task(running.wait())
        stopper = asyncio.create_task(stop_requested.wait())
        await asyncio.wait({waiter, stopper}, return_when=asyncio.FIRST_COMPLETED)
        stopper.cancel()
        await running.stop()
        waiter.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await waiter
    finally:
        for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            loop.remove_signal_handler(signum)


def _close_descriptors_on_exec() -> bool:
    """Make every descriptor above stderr close-on-exec; False if they cannot be listed.

    This process is the server's alone (``serve``), and the server never execs anything
    but commands, which must not inherit descriptors (Popen's close_fds would close
    them in the child). Python and gRPC make all theirs close-on-exec already; this
    catches what the process inherited from whoever started it.
    """
    try:
        names = os.listdir("/proc/self/fd")
    except OSError:
        return False
    for name in names:
        if name.isdigit() and int(name) > 2:
            # The listing's own descriptor is gone by now (EBADF), as may be others.
            with contextlib.suppress(OSError):
                os.set_inheritable(int(name), False)
    return True


def _log_protection(protection: Protection) -> None:
    removed = f"; token variables removed: {', '.join(protection.removed)}"
    if protection.problems:
        log.warning(
            "other processes of this user may be able to read the server's memory: %s%s",
            "; ".join(protection.problems),
            removed if protection.removed else "",
        )
    else:
        log.info("process not dumpable%s", removed if protection.removed else "")


def serve(config: ServerConfig, *, port_file: str | None = None) -> None:
    """Run the server until SIGTERM or SIGINT, then drain and return.

    Logs go to stderr (unless the process already configured logging) and to
    ``[log] file``. ``port_file`` receives the bound port once the server is ready.
    The process is the server's, so it is protected first: no other process of its
    user may read its memory or environment, and the variables that held tokens are
    gone from it (see :mod:`remsvc_core.server.hardening`).
    """
    protection = protect_process(config.hidden_env)
    root = logging.getLogger()
    stderr_log = None
    if not root.handlers:
        stderr_log = server_stderr_log()
        root.addHandler(stderr_log.handler)
    try:
        asyncio.run(_serve(config, port_file, stderr_log, protection))
    finally:
        _detach(stderr_log, root)  # writes out every line still queued
