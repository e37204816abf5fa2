"""Every example in docs/server-operators.md runs, in document order, as an operator would.

- shell blocks run with ``bash -euo pipefail`` (the ``openssl`` recipe makes the
  certificates every later step uses); ``server`` blocks and the systemd unit's
  ``ExecStart`` are started as real server processes (with ``--host 127.0.0.1
  --port 0 --port-file`` appended, so nothing binds a public address or a fixed
  port), and the client blocks after them talk to that server;
- every INI block is loaded by the real loader: named files with ``load_config``,
  fragments with ``parse_config``, ``error`` blocks must be rejected with the
  message shown after them;
- ``policy`` blocks configure a real server; ``allowed`` commands must run on it,
  ``refused`` ones must be refused with PERMISSION_DENIED (and are never sent if
  the policy would let them through), ``slips-past`` ones must get past the policy
  (they are checked, never run).
"""

from __future__ import annotations

import configparser
import json
import re
import shlex
import signal
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from docs_blocks import DOCS, SHELL_LANGS, Block, blocks, check_no_run
from docs_site import Site

from remsvc_core import EmbeddedServer, RetryPolicy, ServerConfig, run_commands_sync
from remsvc_core.errors import ServerConfigError
from remsvc_core.server.config import load_config, parse_config
from remsvc_core.server.config_keys import IDENTITY_KEYS, IDENTITY_SECTION, KEYS, ConfigKey
from remsvc_core.server.identity_policy import IdentityPolicy
from remsvc_core.server.policy import CommandPolicy

DOC = "server-operators.md"
ENV_FILE = "/etc/remsvc/remsvc.env"
SERVER_INI = "/etc/remsvc/server.ini"
START_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 30.0
# The server allows itself this long to reap children after the drain (app.py).
REAP_BOUND_S = 5.0


@dataclass
class RunningProcess:
    popen: subprocess.Popen[bytes]
    log: Path
    where: str

    def stop(self) -> None:
        """SIGTERM, as systemd and Ctrl-C do; the server must drain and exit 0."""
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGTERM)
        try:
            code = self.popen.wait(timeout=STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            self.popen.kill()
            self.popen.wait(timeout=10)
            raise AssertionError(f"{self.where}: server did not stop on SIGTERM") from None
        log = self.log.read_text(errors="replace")
        assert code == 0, f"{self.where}: server exited {code} after SIGTERM\n{log}"
        assert "stopped" in log, log


@dataclass
class Walk:
    """The state carried from one block to the next."""

    site: Site
    server: RunningProcess | None = None
    policy: ServerConfig | None = None
    last_stdout: str = ""
    last_error: str | None = None
    started: list[RunningProcess] = field(default_factory=list)

    def env_file_values(self) -> dict[str, str]:
        path = self.site.sandboxed(ENV_FILE)
        if not path.exists():
            return {}
        values = {}
        for line in path.read_text().splitlines():
            if line.strip() and not line.startswith("#"):
                key, _, value = line.partition("=")
                values[key.strip()] = value.strip()
        return values

    def config_env(self) -> dict[str, str]:
        return {**self.site.env(), **self.env_file_values()}

    def start_server(self, argv: list[str], env: dict[str, str], where: str) -> None:
        if self.server is not None:
            self.server.stop()
            self.server = None
        workdir = self.site.root / f"server-{len(self.started)}"
        workdir.mkdir()
        port_file = workdir / "port"
        log = workdir / "server.log"
        with open(log, "wb") as output:
            popen = subprocess.Popen(
                [
                    *argv,
                    *("--host", "127.0.0.1", "--port", "0", "--port-file", str(port_file)),
                ],
                cwd=self.site.work,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=output,
                stderr=subprocess.STDOUT,
            )
        process = RunningProcess(popen, log, where)
        self.started.append(process)
        deadline = time.monotonic() + START_TIMEOUT_S
        while not port_file.exists():
            if popen.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(
                    f"{where}: the server did not start (exit {popen.poll()})\n"
                    + log.read_text(errors="replace")
                )
            time.sleep(0.05)
        self.server = process
        self.site.port = int(port_file.read_text())


@pytest.fixture
def walk(tmp_path: Path) -> Iterator[Walk]:
    state = Walk(Site(tmp_path / "site"))
    try:
        yield state
    finally:
        for process in state.started:
            if process.popen.poll() is None:
                process.popen.kill()
                process.popen.wait(timeout=10)


def _shell(walk: Walk, block: Block) -> None:
    if block.has("no-run"):
        check_no_run(block)
    elif block.has("server"):
        argv = shlex.split(walk.site.localize(block.text).replace("\\\n", " "))
        walk.start_server(argv, walk.site.env(), block.where)
    else:
        walk.last_stdout = walk.site.run_shell(block).stdout


def _systemd_unit(walk: Walk, block: Block) -> None:
    unit = configparser.ConfigParser(interpolation=None, strict=False)
    unit.optionxform = str  # type: ignore[assignment,method-assign]
    unit.read_string(walk.site.localize(block.text))
    service = unit["Service"]
    assert service.get("KillMode") == "mixed", f"{block.where}: the drain needs KillMode=mixed"
    assert service.get("KillSignal", "SIGTERM") == "SIGTERM"
    config = load_config(walk.site.sandboxed(SERVER_INI), env=walk.config_env())
    assert float(service["TimeoutStopSec"]) > config.drain_grace_s + REAP_BOUND_S, (
        f"{block.where}: TimeoutStopSec must exceed drain_grace_ms plus the reap bound"
    )
    env_file = Path(service["EnvironmentFile"])
    assert env_file == walk.site.sandboxed(ENV_FILE)
    walk.start_server(
        shlex.split(service["ExecStart"]),
        {**walk.site.env(), **walk.env_file_values()},
        block.where,
    )


def _ini(walk: Walk, block: Block) -> None:
    if block.path is not None and block.path.endswith(".service"):
        walk.site.write(block)
        _systemd_unit(walk, block)
        return
    if block.has("error"):
        with pytest.raises(ServerConfigError) as raised:
            parse_config(walk.site.localize(block.text), source=block.where, env=walk.config_env())
        walk.last_error = str(raised.value)
        return
    if block.path is not None:
        config = load_config(walk.site.write(block), env=walk.config_env())
    else:
        config = parse_config(
            walk.site.localize(block.text), source=block.where, env=walk.config_env()
        )
    if block.has("policy"):
        walk.policy = config


def _commands(block: Block) -> list[str]:
    commands = json.loads(block.text)
    assert isinstance(commands, list), f"{block.where}: expected a JSON list of commands"
    assert commands, f"{block.where}: empty list"
    return commands


def _policy_examples(walk: Walk, block: Block) -> None:
    assert walk.policy is not None, f"{block.where}: no policy block before it"
    policy = CommandPolicy(walk.policy.allowlist, walk.policy.denylist)
    commands = _commands(block)
    if block.has("slips-past"):
        # The point is that these get through; they are checked, never run.
        for command in commands:
            assert policy.check(command).allowed, f"{block.where}: {command!r} was stopped"
        return
    expect_allowed = block.has("allowed")
    assert expect_allowed or block.has("refused"), f"{block.where}: unknown json block"
    for command in commands:
        # Never send a command the doc says is refused if the policy would run it.
        assert policy.check(command).allowed == expect_allowed, (
            f"{block.where}: {command!r} is {'refused' if expect_allowed else 'allowed'}"
        )
    config = ServerConfig(
        port=0, allowlist=walk.policy.allowlist, denylist=walk.policy.denylist, source=block.where
    )
    with EmbeddedServer(config) as server:
        for command in commands:
            outcome = run_commands_sync(
                [command], server.settings(), stream_timeout=30, retry=RetryPolicy(attempts=1)
            )
            if expect_allowed:
                assert outcome.complete, f"{block.where}: {command!r}: {outcome.describe_failure()}"
            else:
                assert outcome.status_code == "PERMISSION_DENIED", (block.where, command, outcome)
                assert not outcome.results, (block.where, command)


def _text(walk: Walk, block: Block) -> None:
    expected = walk.site.localize(block.text)
    if block.has("output"):
        for line in filter(None, (line.strip() for line in expected.splitlines())):
            assert line in walk.last_stdout, (
                f"{block.where}: {line!r} not in the output:\n{walk.last_stdout}"
            )
    elif block.has("error-message"):
        assert walk.last_error is not None, f"{block.where}: no error example before it"
        assert expected.strip() in walk.last_error, (block.where, walk.last_error)
        walk.last_error = None
    else:
        raise AssertionError(f"{block.where}: a text block must be tagged output or error-message")


def test_every_example_of_the_operators_guide_runs(walk: Walk) -> None:
    found = blocks(DOC)
    kinds = {block.lang for block in found}
    assert {"bash", "ini", "json", "text"} <= kinds
    for block in found:
        if block.lang in SHELL_LANGS:
            _shell(walk, block)
        elif block.lang == "ini":
            _ini(walk, block)
        elif block.lang == "json":
            _policy_examples(walk, block)
        elif block.lang == "text":
            _text(walk, block)
        else:
            raise AssertionError(f"{block.where}: no test runs {block.lang!r} blocks")
    assert walk.server is not None, "the guide never started a server"
    assert len(walk.started) == 2  # the first look, then the systemd unit
    walk.server.stop()
    walk.server = None


def test_the_production_config_is_the_one_the_allow_list_section_explains() -> None:
    """The [allowlist] shown in server.ini and the one the policy section attacks agree."""
    found = blocks(DOC)
    production = next(b for b in found if b.path == SERVER_INI and "[allowlist]" in b.text)
    explained = next(b for b in found if b.has("policy") and b.path is None)
    env = {"REMSVC_TOKEN_AIRFLOW_PROD": "x", "REMSVC_TOKEN_ANALYSTS": "y"}
    # Only the lists are compared: the production file's TLS paths are not needed.
    production_text = production.text.replace("enabled = true", "enabled = false")
    production_text = production_text.replace("host = 0.0.0.0", "host = 127.0.0.1")
    assert (
        parse_config(production_text, env=env).allowlist
        == parse_config(explained.text, env=env).allowlist
    )


_KEY_ROW = re.compile(r"\| `(?P<key>[a-z_]+)` \| (?P<default>[^|]*) \| (?P<meaning>.*) \|")


def _key_tables() -> dict[str, list[re.Match[str]]]:
    """section -> the rows of the key table under its ``### `[section]``` heading
    (``identity`` for ``### `[identity NAME]```; its free-form rows are not keys)."""
    tables: dict[str, list[re.Match[str]]] = {}
    section = None
    for line in (DOCS / DOC).read_text(encoding="utf-8").splitlines():
        if line.startswith("#"):
            heading = re.fullmatch(r"### `\[(\w+)(?: NAME)?\]`", line)
            section = heading.group(1) if heading else None
        elif section is not None and (row := _KEY_ROW.fullmatch(line)):
            tables.setdefault(section, []).append(row)
    return tables


def _shown_default(key: ConfigKey, value: object) -> str:
    if value is None:
        return key.default_text or "(none)"
    return f"`{key.kind.show(value)}`"


def test_the_key_tables_are_the_config_table() -> None:
    """Every fixed key is documented, in table order, with its default and upstream status."""
    declared: dict[str, list[ConfigKey]] = {}
    for key in KEYS:
        declared.setdefault(key.section, []).append(key)
    declared[IDENTITY_SECTION] = list(IDENTITY_KEYS)
    documented = _key_tables()
    assert sorted(documented) == sorted(declared)
    in_order = [section for section in documented if section != IDENTITY_SECTION]
    assert in_order == [section for section in declared if section != IDENTITY_SECTION]
    for section, keys in declared.items():
        defaults: object = IdentityPolicy() if section == IDENTITY_SECTION else ServerConfig()
        rows = documented[section]
        assert [row["key"] for row in rows] == [key.name for key in keys], section
        for row, key in zip(rows, keys, strict=True):
            shown = _shown_default(key, getattr(defaults, key.field))
            assert row["default"] == shown, (section, key.name)
            says_not_upstream = "Not in upstream" in row["meaning"]
            assert says_not_upstream == (not key.upstream), (section, key.name)
