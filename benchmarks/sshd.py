"""A throwaway OpenSSH server on a loopback port, for the "what users pick instead" scenario.

It never touches the system's sshd: its own config, host key, user key and
authorized_keys live in a temporary directory, it listens on 127.0.0.1 on a free high
port, runs in the foreground (``-D -e -f CONFIG``) as our child and is stopped by pid.
"""

from __future__ import annotations

import getpass
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from types import TracebackType

NO_SSHD = "no sshd (install openssh-server or pass --install-sshd)"
_START_TIMEOUT_S = 20.0


def find_sshd() -> str | None:
    found = shutil.which("sshd") or shutil.which("sshd", path="/usr/sbin:/usr/local/sbin:/sbin")
    return os.path.abspath(found) if found else None


def install_sshd() -> str:
    """``apt-get install openssh-server`` (only when asked with --install-sshd).

    In this container image /usr/sbin/policy-rc.d forbids starting services, so the
    package's own sshd is not started; if it were, it would not be ours to stop.
    """
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    command = ["apt-get", "install", "-y", "--no-install-recommends", "openssh-server"]
    proc = subprocess.run(
        command, env=env, capture_output=True, text=True, timeout=600, check=False
    )
    if proc.returncode != 0:
        # A fresh machine may have no package lists yet.
        subprocess.run(
            ["apt-get", "update"], env=env, capture_output=True, timeout=600, check=False
        )
        proc = subprocess.run(
            command, env=env, capture_output=True, text=True, timeout=600, check=False
        )
    sshd = find_sshd()
    if proc.returncode != 0 or sshd is None:
        raise RuntimeError(f"apt-get install openssh-server failed: {proc.stderr.strip()[-300:]}")
    return sshd


def openssh_version() -> str:
    try:
        proc = subprocess.run(
            ["ssh", "-V"], capture_output=True, text=True, timeout=10, check=False
        )
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return (proc.stderr or proc.stdout).strip() or "unknown"


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _keygen(path: str) -> None:
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "remsvc-benchmark", "-f", path],
        check=True,
        capture_output=True,
        timeout=30,
    )


class ThrowawaySshd:
    """sshd with its own everything in a temp dir; ``.port``, ``.user``, ``.user_key``,
    ``.host_key_pub`` (the public host key line, for checking the server's identity)."""

    def __init__(self, sshd_path: str) -> None:
        self.sshd_path = sshd_path
        self._dir = tempfile.TemporaryDirectory(prefix="remsvc-bench-sshd-")
        self.user = getpass.getuser()
        self.user_key = os.path.join(self._dir.name, "user_key")
        self.port = 0
        self.host_key_pub = ""
        self._proc: subprocess.Popen[bytes] | None = None
        self._log = os.path.join(self._dir.name, "sshd.log")

    def _write_config(self, port: int) -> str:
        host_key = os.path.join(self._dir.name, "host_key")
        authorized = os.path.join(self._dir.name, "authorized_keys")
        if not os.path.exists(host_key):
            _keygen(host_key)
            _keygen(self.user_key)
            shutil.copyfile(self.user_key + ".pub", authorized)
            os.chmod(authorized, 0o600)
        with open(host_key + ".pub", encoding="ascii") as handle:
            self.host_key_pub = handle.read().strip()
        # An empty home for the session: bash sources ~/.bashrc for commands run over SSH,
        # and this machine's root .bashrc (pyenv init) costs ~75 ms a command that has
        # nothing to do with SSH. A clean service account on a real host has no such file.
        home = os.path.join(self._dir.name, "home")
        os.makedirs(home, exist_ok=True)
        config = os.path.join(self._dir.name, "sshd_config")
        with open(config, "w", encoding="ascii") as handle:
            handle.write(
                "\n".join(
                    [
                        f"Port {port}",
                        "ListenAddress 127.0.0.1",
                        f"HostKey {host_key}",
                        f"PidFile {os.path.join(self._dir.name, 'sshd.pid')}",
                        f"AuthorizedKeysFile {authorized}",
                        "PubkeyAuthentication yes",
                        "PasswordAuthentication no",
                        "KbdInteractiveAuthentication no",
                        "PermitRootLogin prohibit-password",
                        "UsePAM no",
                        # The key files sit in a temp dir under /tmp (world-writable parent).
                        "StrictModes no",
                        "UseDNS no",
                        "PrintMotd no",
                        "LogLevel ERROR",
                        f"SetEnv HOME={home}",
                        "",
                    ]
                )
            )
        return config

    def start(self) -> ThrowawaySshd:
        # OpenSSH insists on its privilege-separation directory even in the foreground.
        os.makedirs("/run/sshd", mode=0o755, exist_ok=True)
        for _ in range(3):  # the free port can be taken between probing and binding
            port = _free_port()
            config = self._write_config(port)
            check = subprocess.run(
                [self.sshd_path, "-t", "-f", config],
                capture_output=True,
                text=True,
                timeout=30,
                check=False,
            )
            if check.returncode != 0:
                raise RuntimeError(f"sshd rejected its config: {check.stderr.strip()}")
            with open(self._log, "wb") as log:
                self._proc = subprocess.Popen(
                    [self.sshd_path, "-D", "-e", "-f", config],
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=log,
                )
            if self._wait_listening(port):
                self.port = port
                return self
            self._stop_process()
        raise RuntimeError(f"sshd did not start: {self._tail()}")

    def _wait_listening(self, port: int) -> bool:
        deadline = time.monotonic() + _START_TIMEOUT_S
        while time.monotonic() < deadline:
            assert self._proc is not None
            if self._proc.poll() is not None:
                return False
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=1) as sock:
                    if sock.recv(64).startswith(b"SSH-"):
                        return True
            except OSError:
                time.sleep(0.1)
        return False

    def _tail(self) -> str:
        try:
            with open(self._log, encoding="utf-8", errors="replace") as handle:
                return " ".join(handle.read().strip().splitlines()[-5:])
        except OSError:
            return ""

    def _stop_process(self) -> None:
        proc = self._proc
        if proc is not None and proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)
        self._proc = None

    def stop(self) -> None:
        self._stop_process()
        self._dir.cleanup()

    def __enter__(self) -> ThrowawaySshd:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
