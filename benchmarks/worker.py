"""One measurement in a fresh process: ``python -m benchmarks.worker JOB 'JSON ARGS'``.

Each job prints one JSON object on its last stdout line. Jobs warm up first (imports,
channel, first spawn) and measure only the part they name; memory figures are the
process's own peak resident set (VmHWM), absolute and, where it says so, the growth
over the level right before the measured part.
"""

from __future__ import annotations

import asyncio
import gc
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from typing import Any

from benchmarks.measure import peak_rss_mib, reset_peak_rss, rss_mib

Job = Callable[[dict[str, Any]], dict[str, Any]]
JOBS: dict[str, Job] = {}


def job(function: Job) -> Job:
    JOBS[function.__name__] = function
    return function


# ---------------------------------------------------------------- baselines without us


def _spawn(cmd: str) -> int:
    # The same shape as the server's spawn: /bin/sh -c in a new session, stdin closed,
    # stdout and stderr captured through pipes.
    proc = subprocess.run(
        ["/bin/sh", "-c", cmd],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        start_new_session=True,
        check=False,
    )
    return proc.returncode


@job
def direct_spawn(args: dict[str, Any]) -> dict[str, Any]:
    """N commands spawned one after another: the limit for sequential execution."""
    n, cmd = int(args["n"]), str(args["cmd"])
    for _ in range(min(20, n)):
        _spawn(cmd)
    failures = 0
    cpu_start = time.process_time()
    start = time.perf_counter()
    for _ in range(n):
        failures += _spawn(cmd) != 0
    elapsed = time.perf_counter() - start
    cpu = time.process_time() - cpu_start
    return {
        "elapsed_s": elapsed,
        "rate": n / elapsed,
        "failures": failures,
        # The parent's own CPU (spawning, reading the pipes, reaping), not the children's.
        "cpu_us_per_command": cpu / n * 1e6,
    }


@job
def cat_pipe(args: dict[str, Any]) -> dict[str, Any]:
    """``cat FILE`` into a pipe read by this process: the local cost of moving the bytes."""
    path, size = str(args["path"]), int(args["size"])
    subprocess.run(["cat", path], stdout=subprocess.PIPE, check=True)  # page cache warm
    gc.collect()
    reset_peak_rss()
    before = rss_mib()
    start = time.perf_counter()
    proc = subprocess.run(["cat", path], stdout=subprocess.PIPE, check=True)
    elapsed = time.perf_counter() - start
    got = len(proc.stdout)
    peak = peak_rss_mib()
    del proc
    return {
        "elapsed_s": elapsed,
        "mb_per_s": size / 1e6 / elapsed,
        "bytes": got,
        "peak_rss_mib": peak,
        "peak_growth_mib": peak - before,
    }


# ---------------------------------------------------------------- synthetic results


def synthetic_results(n: int) -> dict[int, dict[str, Any]]:
    """``{tid: result}`` like a real stream's: short output, every 10th command failing."""
    from remsvc_core.hashing import command_hash

    results: dict[int, dict[str, Any]] = {}
    for tid in range(1, n + 1):
        cmd = f"echo host-{tid:06d} && uptime"
        failed = tid % 10 == 0
        results[tid] = {
            "tid": tid,
            "rc": 1 if failed else 0,
            "out": "" if failed else f"host-{tid:06d}\n 10:00:00 up 1 day, load average: 0.1\n",
            "err": "uptime: not found\n" if failed else "",
            "hsh": command_hash(cmd),
            "cmd": cmd,
        }
    return results


def _measure_call(function: Callable[[Any], Any], data: Any, repeat: int) -> dict[str, Any]:
    """Peak memory of the first call, then the best time of ``repeat`` calls.

    Memory comes first: once a call has run, the allocator keeps the memory it freed and
    the next call's peak would not show in the resident set. Growth is over the resident
    set right before the call (the input already built, so not counted).
    """
    gc.collect()
    reset_peak_rss()
    before = rss_mib()
    start = time.perf_counter()
    value = function(data)
    times = [time.perf_counter() - start]
    peak = peak_rss_mib()
    size = len(value) if hasattr(value, "__len__") else -1
    del value
    for _ in range(repeat - 1):
        gc.collect()
        start = time.perf_counter()
        value = function(data)
        times.append(time.perf_counter() - start)
        del value
    return {
        "elapsed_s": min(times),
        "times_s": times,
        "peak_growth_mib": peak - before,
        "peak_rss_mib": peak,
        "output_len": size,
    }


@job
def pandas_baseline(args: dict[str, Any]) -> dict[str, Any]:
    """``pd.DataFrame.from_records`` of the same dicts: what the user could write by hand."""
    import pandas as pd

    n, repeat = int(args["n"]), int(args.get("repeat", 3))
    results = synthetic_results(n)

    def build(data: dict[int, dict[str, Any]]) -> Any:
        return pd.DataFrame.from_records(list(data.values()))

    build(synthetic_results(10))
    return _measure_call(build, results, repeat)


@job
def handler(args: dict[str, Any]) -> dict[str, Any]:
    """One handler spec from ``resolve_handler`` applied to the synthetic results."""
    import pandas  # noqa: F401  (imported up front: the baseline imports it too)

    from remsvc_core.handlers import resolve_handler

    n, repeat = int(args["n"]), int(args.get("repeat", 3))
    pipeline = resolve_handler(args["spec"])
    results = synthetic_results(n)
    pipeline.apply(synthetic_results(10))
    return _measure_call(pipeline.apply, results, repeat)


@job
def result_hook(args: dict[str, Any]) -> dict[str, Any]:
    """A handler spec's fail-fast hooks fed every result of one stream of N commands,
    called as the engine calls them (``StreamHooks.result``, once per result, on the
    loop): the time per result, best of ``repeat`` streams."""
    from remsvc_core.commands import validate_commands
    from remsvc_core.handlers import resolve_handler
    from remsvc_core.hookspecs import StreamInfo
    from remsvc_core.plugins import StreamHooks
    from remsvc_core.results import CommandResult

    n, repeat = int(args["n"]), int(args.get("repeat", 3))
    batch = validate_commands([f"echo host-{tid:06d} && uptime" for tid in range(1, n + 1)])
    results = [CommandResult(tid=c.tid, rc=0, out="", err="", hsh=c.hsh, cmd=c.cmd) for c in batch]
    pipeline = resolve_handler(args["spec"])
    times = []
    for _ in range(repeat):
        hooks = StreamHooks(pipeline.result_hooks())
        stream = StreamInfo(stream_id="bench", target="127.0.0.1:0", commands=tuple(batch))
        hooks.stream_started(stream)
        gc.collect()
        start = time.perf_counter()
        stops = [stop for stop in map(hooks.result, results, [stream] * n) if stop is not None]
        times.append(time.perf_counter() - start)
        if stops or hooks.errors:  # a hook that stopped early would look fast
            raise RuntimeError(f"the hooks did not pass every result: {stops[:1]} {hooks.errors}")
    return {"elapsed_s": min(times), "per_result_us": min(times) / n * 1e6, "times_s": times}


# ---------------------------------------------------------------- through our engine


def _settings(args: dict[str, Any]) -> Any:
    from remsvc_core.settings import ChannelSettings

    kwargs: dict[str, Any] = {"target": str(args["target"])}
    if args.get("max_receive_bytes"):
        kwargs["max_receive_bytes"] = int(args["max_receive_bytes"])
    return ChannelSettings(**kwargs)


def _outcome_summary(outcome: Any) -> dict[str, Any]:
    return {
        "results": len(outcome.results),
        "missing": len(outcome.missing_tids),
        "status": outcome.status_code,
        "details": outcome.status_details[:200],
        "nonzero_rc": sum(1 for r in outcome.results.values() if r.rc != 0),
    }


@job
def stream(args: dict[str, Any]) -> dict[str, Any]:
    """N commands through one RemCmdStrm; wall time and this process's CPU time."""
    from remsvc_core.engine import run_commands

    n, cmd = int(args["n"]), str(args["cmd"])
    settings = _settings(args)
    timeout = float(args.get("stream_timeout", 600.0))

    async def main() -> dict[str, Any]:
        warm = await run_commands([cmd] * 3, settings, stream_timeout=60.0)
        if not warm.complete:
            raise RuntimeError(f"warm-up stream failed: {warm.describe_failure()}")
        commands = [cmd] * n
        gc.collect()
        reset_peak_rss()
        before = rss_mib()
        cpu0, wall0 = time.process_time(), time.perf_counter()
        outcome = await run_commands(commands, settings, stream_timeout=timeout)
        cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
        return {
            "elapsed_s": wall,
            "rate": n / wall,
            "cpu_s": cpu,
            "cpu_us_per_result": cpu / n * 1e6,
            "out_bytes": sum(len(r.out) for r in outcome.results.values()),
            "peak_rss_mib": peak_rss_mib(),
            "peak_growth_mib": peak_rss_mib() - before,
            **_outcome_summary(outcome),
        }

    return asyncio.run(main())


async def _bare_stream(channel: Any, cmd: str, count: int) -> int:
    """One RemCmdStrm driven with nothing but grpc.aio and the generated stubs."""
    from remsvc_core.hashing import command_hash
    from remsvc_core.wire import METHOD_STREAM, pb

    call = channel.stream_stream(
        METHOD_STREAM,
        request_serializer=pb.RemCmdMsg.SerializeToString,
        response_deserializer=pb.RemResMsg.FromString,
    )()
    hsh = command_hash(cmd)

    async def write() -> None:
        for tid in range(1, count + 1):
            await call.write(pb.RemCmdMsg(cmd=cmd, tid=tid, hsh=hsh))
        await call.done_writing()

    writer = asyncio.create_task(write())
    got = 0
    async for response in call:
        got += response.tid > 0
    await writer
    return got


@job
def client_cost(args: dict[str, Any]) -> dict[str, Any]:
    """Client CPU per result: the engine against the same stream driven with bare
    grpc.aio (what gRPC itself costs), alternating in one process, ``rounds`` times."""
    import grpc

    from remsvc_core.engine import run_commands

    n, cmd, rounds = int(args["n"]), str(args["cmd"]), int(args["rounds"])
    settings = _settings(args)
    options = [("grpc.max_receive_message_length", settings.max_receive_bytes)]

    async def main() -> dict[str, Any]:
        engine_us: list[float] = []
        bare_us: list[float] = []
        checks: list[str] = []
        async with grpc.aio.insecure_channel(settings.target, options=options) as channel:
            await _bare_stream(channel, cmd, 3)
            await run_commands([cmd] * 3, settings, stream_timeout=60.0)
            for index in range(rounds):
                for which in ("bare", "engine") if index % 2 == 0 else ("engine", "bare"):
                    gc.collect()
                    cpu0 = time.process_time()
                    if which == "bare":
                        got = await _bare_stream(channel, cmd, n)
                        bare_us.append((time.process_time() - cpu0) / n * 1e6)
                    else:
                        outcome = await run_commands([cmd] * n, settings, stream_timeout=600.0)
                        engine_us.append((time.process_time() - cpu0) / n * 1e6)
                        got = len(outcome.results)
                        if not outcome.complete:
                            checks.append(outcome.describe_failure())
                    if got != n:
                        checks.append(f"{which}: {got} of {n} results")
        return {"engine_us": engine_us, "bare_us": bare_us, "problems": checks}

    return asyncio.run(main())


@job
def many_streams(args: dict[str, Any]) -> dict[str, Any]:
    """S concurrent streams of K commands each from one event loop, as in one triggerer."""
    from remsvc_core.engine import run_commands

    streams, per_stream = int(args["streams"]), int(args["per_stream"])
    commands = [str(c) for c in args["commands"]][:per_stream]
    settings = _settings(args)
    timeout = float(args.get("stream_timeout", 600.0))

    async def main() -> dict[str, Any]:
        warm = await run_commands(commands, settings, stream_timeout=60.0)
        if not warm.complete:
            raise RuntimeError(f"warm-up stream failed: {warm.describe_failure()}")
        gc.collect()
        idle = rss_mib()
        start = time.perf_counter()
        outcomes = await asyncio.gather(
            *(run_commands(commands, settings, stream_timeout=timeout) for _ in range(streams)),
            return_exceptions=True,
        )
        elapsed = time.perf_counter() - start
        raised = [repr(o)[:200] for o in outcomes if isinstance(o, BaseException)]
        done = [o for o in outcomes if not isinstance(o, BaseException)]
        received = sum(len(o.results) for o in done)
        statuses: dict[str, int] = {}
        for outcome in done:
            statuses[outcome.status_code] = statuses.get(outcome.status_code, 0) + 1
        expected = streams * len(commands)
        return {
            "elapsed_s": elapsed,
            "expected": expected,
            "received": received,
            "lost": expected - received,
            "raised": raised[:5],
            "raised_count": len(raised),
            "statuses": statuses,
            "wrong_output": sum(
                1 for o in done for r in o.results.values() if r.rc != 0 or r.out != f"{r.tid}\n"
            ),
            "idle_rss_mib": idle,
            "peak_rss_mib": peak_rss_mib(),
        }

    return asyncio.run(main())


def _output_bytes(outcome: Any) -> int:
    """Bytes of stdout that came back, in memory or in spill files (after the timing)."""
    got = 0
    for result in outcome.results.values():
        got += len(result.out)
        if result.out_file is not None:
            got += os.path.getsize(result.out_file)
    return got


@job
def fleet_hosts(args: dict[str, Any]) -> dict[str, Any]:
    """One fan-out (run_fleet) over H hosts from one event loop, at most C at once."""
    from remsvc_core import channels
    from remsvc_core.fleet import run_fleet
    from remsvc_core.settings import ChannelSettings

    targets = [ChannelSettings(target=str(target)) for target in args["targets"]]
    commands = [str(c) for c in args["commands"]]
    concurrency = int(args["max_concurrency"])

    async def main() -> dict[str, Any]:
        warm = await run_fleet(commands, targets[:3], max_concurrency=3)
        if warm.in_state("FAILED"):
            raise RuntimeError(f"warm-up fan-out failed: {warm.to_json()['hosts'][:1]}")
        gc.collect()
        reset_peak_rss()
        idle = rss_mib()
        start = time.perf_counter()
        fleet = await run_fleet(commands, targets, max_concurrency=concurrency)
        elapsed = time.perf_counter() - start
        loop_channels = channels._channels_of(asyncio.get_running_loop()).channels
        expected = len(targets) * len(commands)
        received = len(fleet.raw_results())
        return {
            "elapsed_s": elapsed,
            "hosts": len(targets),
            "expected": expected,
            "received": received,
            "lost": expected - received,
            "failed_hosts": len(fleet.in_state("FAILED")),
            "channels_left": len(loop_channels),
            "idle_rss_mib": idle,
            "peak_rss_mib": peak_rss_mib(),
            "peak_growth_mib": peak_rss_mib() - idle,
        }

    return asyncio.run(main())


@job
def large_output(args: dict[str, Any]) -> dict[str, Any]:
    """One command whose stdout is SIZE bytes, through one stream, in one of three modes:
    ``classic`` (the whole output in the result message, as 1.0.0's wire has it),
    ``live`` (sent as it is printed, put back together in memory) or ``spill`` (sent
    as it is printed, kept in a file past 8 MiB)."""
    from remsvc_core.engine import run_commands

    cmd, size, mode = str(args["cmd"]), int(args["size"]), str(args.get("mode", "classic"))
    settings = _settings(args)
    spill_dir = tempfile.mkdtemp(prefix="remsvc-bench-spill-") if mode == "spill" else None
    modes: dict[str, dict[str, Any]] = {
        "classic": {},
        "live": {"follow": True},
        "spill": {"spill_dir": spill_dir},
    }
    options = modes[mode]

    async def main() -> dict[str, Any]:
        warm = await run_commands(["echo warm"], settings, stream_timeout=60.0, **options)
        if not warm.complete:
            raise RuntimeError(f"warm-up stream failed: {warm.describe_failure()}")
        gc.collect()
        reset_peak_rss()
        before = rss_mib()
        start = time.perf_counter()
        outcome = await run_commands([cmd], settings, stream_timeout=600.0, **options)
        elapsed = time.perf_counter() - start
        peak = peak_rss_mib()
        return {
            "elapsed_s": elapsed,
            "mb_per_s": size / 1e6 / elapsed,
            "bytes": _output_bytes(outcome),
            "peak_rss_mib": peak,
            "peak_growth_mib": peak - before,
            "mode": mode,
            "extensions": list(outcome.extensions),
            **_outcome_summary(outcome),
        }

    try:
        return asyncio.run(main())
    finally:
        if spill_dir is not None:
            shutil.rmtree(spill_dir, ignore_errors=True)


@job
def original_trigger(args: dict[str, Any]) -> dict[str, Any]:
    """The same stream through airflow-provider-remsvc 1.0.0's RemSvcTrigger, imported
    from the temporary directory it was installed into (never from our tree)."""
    path, n, cmd = str(args["path"]), int(args["n"]), str(args["cmd"])
    # Its hook reads the connection from Airflow; an environment connection needs no DB.
    os.environ["AIRFLOW_CONN_REMSVC_DEFAULT"] = f"remsvc://{args['target']}"
    sys.path.insert(0, path)
    import remsvc_provider
    from remsvc_provider.triggers.remsvc import RemSvcTrigger

    if not os.path.abspath(remsvc_provider.__file__).startswith(os.path.abspath(path)):
        raise RuntimeError(f"imported {remsvc_provider.__file__}, not the original from {path}")

    async def once(count: int) -> dict[str, Any]:
        trigger = RemSvcTrigger(commands=[{"cmd": cmd}] * count, stream_timeout=600.0)
        async for event in trigger.run():
            return dict(event.payload)
        raise RuntimeError("the original trigger yielded no event")

    async def main() -> dict[str, Any]:
        await once(3)
        gc.collect()
        cpu0, wall0 = time.process_time(), time.perf_counter()
        payload = await once(n)
        cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
        return {
            "elapsed_s": wall,
            "rate": n / wall,
            "cpu_us_per_result": cpu / n * 1e6,
            "state": str(payload.get("state")),
            "results": len(payload.get("results") or {}),
            "error": payload.get("error"),
        }

    return asyncio.run(main())


# ---------------------------------------------------------------- what users pick instead


def _ssh_connect(args: dict[str, Any]) -> Any:
    import base64
    import socket

    import paramiko  # type: ignore[import-untyped]

    client = paramiko.SSHClient()
    # The host key is the throwaway one the benchmark generated: check it, accept no other.
    key_type, key_b64 = str(args["host_key_pub"]).split()[:2]
    host_key = paramiko.Ed25519Key(data=base64.b64decode(key_b64))
    client.get_host_keys().add(f"[127.0.0.1]:{args['port']}", key_type, host_key)
    client.set_missing_host_key_policy(paramiko.RejectPolicy())
    sock = None
    if args.get("nodelay"):
        # paramiko leaves Nagle's algorithm on; with it every channel open waits ~40 ms
        # for a delayed ACK. Turning it off is the one tuning a careful user would do.
        sock = socket.create_connection(("127.0.0.1", int(args["port"])), timeout=30)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    client.connect(
        "127.0.0.1",
        port=int(args["port"]),
        sock=sock,
        username=str(args["user"]),
        key_filename=str(args["key"]),
        look_for_keys=False,
        allow_agent=False,
        timeout=30,
        banner_timeout=30,
        auth_timeout=30,
    )
    return client


def _ssh_exec(transport: Any, cmd: str) -> int:
    channel = transport.open_session(timeout=30)
    try:
        channel.settimeout(60)
        channel.exec_command(cmd)
        stdout = channel.makefile("rb")
        stderr = channel.makefile_stderr("rb")
        stdout.read()
        stderr.read()
        return int(channel.recv_exit_status())
    finally:
        channel.close()


@job
def ssh_one_connection(args: dict[str, Any]) -> dict[str, Any]:
    """N commands over one SSH connection: one exec channel per command on one Transport."""
    n, cmd = int(args["n"]), str(args["cmd"])
    client = _ssh_connect(args)
    try:
        transport = client.get_transport()
        for _ in range(3):
            _ssh_exec(transport, cmd)
        failures = 0
        start = time.perf_counter()
        for _ in range(n):
            failures += _ssh_exec(transport, cmd) != 0
        elapsed = time.perf_counter() - start
    finally:
        client.close()
    return {"elapsed_s": elapsed, "rate": n / elapsed, "failures": failures}


@job
def ssh_connection_per_command(args: dict[str, Any]) -> dict[str, Any]:
    """A new SSH connection (handshake, key auth) for every command, as one SSHOperator
    task per command pays it."""
    n, cmd = int(args["n"]), str(args["cmd"])
    client = _ssh_connect(args)
    client.close()
    failures = 0
    start = time.perf_counter()
    for _ in range(n):
        client = _ssh_connect(args)
        try:
            failures += _ssh_exec(client.get_transport(), cmd) != 0
        finally:
            client.close()
    elapsed = time.perf_counter() - start
    return {"elapsed_s": elapsed, "rate": n / elapsed, "failures": failures}


def main(argv: list[str]) -> int:
    if len(argv) != 2 or argv[0] not in JOBS:
        print(
            f"usage: python -m benchmarks.worker {{{','.join(sorted(JOBS))}}} JSON", file=sys.stderr
        )
        return 2
    result = JOBS[argv[0]](json.loads(argv[1]))
    result["pid"] = os.getpid()
    print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
