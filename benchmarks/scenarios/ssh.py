"""6. What users would pick instead: SSH.

A real OpenSSH server, started by the benchmark on a loopback port with throwaway keys
(see :mod:`benchmarks.sshd`), driven with paramiko two ways: N commands over one
connection (one exec channel per command on one Transport), and a new connection per
command (what one SSHOperator task per command pays; fewer commands, it is slow). Our
figure is one stream with the server's default max_parallel=1, measured in the same
rounds; the ratio is our throughput as a multiple of theirs.
"""

from __future__ import annotations

from typing import Any

from benchmarks.measure import median, paired_ratio, rotating_rounds, run_worker, spread
from benchmarks.report import Row, ScenarioResult, Target
from benchmarks.scenarios import Context
from benchmarks.server_proc import ServerProcess
from benchmarks.sshd import NO_SSHD, ThrowawaySshd, find_sshd, install_sshd, openssh_version

KEY = "ssh"
TITLE = "6. vs SSH (paramiko + OpenSSH)"
CMD = "true"
ONE_CONNECTION = "ours vs paramiko, one connection"
ONE_CONNECTION_NODELAY = "ours vs paramiko, one connection, TCP_NODELAY"
NEW_CONNECTION = "ours vs paramiko, new connection per command"
CASES = {ONE_CONNECTION: "one", ONE_CONNECTION_NODELAY: "one_nodelay", NEW_CONNECTION: "new"}
TARGETS = {ONE_CONNECTION: Target(">=", 5.0)}


def _skipped(reason: str) -> ScenarioResult:
    result = ScenarioResult(KEY, TITLE)
    for case in CASES:
        result.rows.append(
            Row(case=case, value=None, unit="cmd/s", target=TARGETS.get(case), skipped=reason)
        )
    result.notes.append(f"skipped: {reason}")
    return result


def run(ctx: Context) -> ScenarioResult:
    sshd_path = find_sshd()
    if sshd_path is None and ctx.install_sshd:
        ctx.log("ssh: installing openssh-server (--install-sshd)")
        sshd_path = install_sshd()
    if sshd_path is None:
        return _skipped(NO_SSHD)
    sizes = ctx.sizes
    n, n_default, n_new = sizes.ssh_n, sizes.ssh_default_n, sizes.ssh_new_connection_n
    result = ScenarioResult(KEY, TITLE)
    outputs: dict[str, list[dict[str, Any]]] = {}
    with ThrowawaySshd(sshd_path) as sshd, ServerProcess(max_parallel=1) as server:
        ssh_args = {"port": sshd.port, "user": sshd.user, "key": sshd.user_key,
                    "host_key_pub": sshd.host_key_pub, "cmd": CMD}  # fmt: skip

        def measure(job: str, args: dict[str, Any], name: str) -> float:
            out = run_worker(job, args, timeout=900)
            outputs.setdefault(name, []).append(out)
            if out.get("failures") or out.get("missing"):
                raise RuntimeError(f"{name}: commands failed: {out}")
            return float(out["rate"])

        measures = {
            "ours": lambda: measure(
                "stream", {"target": server.target, "n": n, "cmd": CMD}, "ours"
            ),
            "one": lambda: measure("ssh_one_connection", {**ssh_args, "n": n_default}, "one"),
            "one_nodelay": lambda: measure(
                "ssh_one_connection", {**ssh_args, "n": n, "nodelay": True}, "one_nodelay"
            ),
            "new": lambda: measure("ssh_connection_per_command", {**ssh_args, "n": n_new}, "new"),
        }
        ctx.log(
            f"ssh: {sizes.rounds} round(s): {n} commands ours and over one connection, "
            f"{n_new} over new connections"
        )
        rates = rotating_rounds(sizes.rounds, measures)

    for case, key in CASES.items():
        result.rows.append(
            Row(
                case=case,
                value=median(rates["ours"]),
                unit="cmd/s",
                baseline=median(rates[key]),
                baseline_label="paramiko",
                ratio=paired_ratio(rates["ours"], rates[key]),
                target=TARGETS.get(case),
            )
        )
    result.notes += [
        f"{openssh_version()} on 127.0.0.1 (its own sshd_config, ed25519 host and user keys "
        f"made for this run), paramiko client; `{CMD}` as the command. The session's HOME is "
        "an empty directory: bash reads ~/.bashrc for commands run over SSH, and this "
        "machine's root .bashrc (pyenv init) alone costs ~75 ms a command.",
        f"ours: {n} commands per stream, rates {spread(rates['ours'])} cmd/s; paramiko one "
        f"connection: {n_default} commands, rates {spread(rates['one'])} cmd/s as paramiko comes "
        f"(Nagle on, as SSHClient.connect opens its socket: each channel open waits ~40 ms "
        f"for a delayed ACK), {spread(rates['one_nodelay'])} cmd/s over {n} commands with "
        f"TCP_NODELAY set on "
        f"its socket; new connection per "
        f"command: {n_new} commands (fewer: each pays a TCP and SSH handshake and key "
        f"authentication), rates {spread(rates['new'])} cmd/s; {sizes.rounds} round(s).",
    ]
    result.details = {"rounds": outputs}
    return result
