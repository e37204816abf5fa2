"""Configuration that fails closed (issue 12.6, 12.7, 12.9), against real server processes.

Each test reproduces one way a configuration used to mean less than the operator
wrote, or to stall or crash the server, and shows the server now refuses at startup
(exit 2, on stderr, labelled a configuration error, naming file, line and fix), or
runs exactly what was written. Figures: the files tried, the time a catastrophic
pattern took to refuse, the refusals a flood of bad tokens produced in the log.
"""

from __future__ import annotations

import os
import re
import textwrap
import threading
import time
from pathlib import Path

import grpc
import pytest
from support.server_process import ServerStartError, run_stream

from remsvc_core.server.config_keys import KEYS
from remsvc_core.server.config_kinds import Integer, Milliseconds
from remsvc_core.wire import pb, pb_grpc

pytestmark = [pytest.mark.reliability, pytest.mark.timeout(180)]

TOKEN = "config-test-t0ken-5d1c"


def refused_at_startup(server_process, text: str, figures, **kwargs) -> str:
    """Start a server with INI ``text``; it must exit 2 before listening. Its output."""
    with pytest.raises(ServerStartError) as caught:
        server_process(text, **kwargs)
    figures.tried("misconfigured server files")
    output = caught.value.output
    assert caught.value.returncode == 2, output
    assert "remsvc-server: configuration error: " in output, output
    assert "server.ini: " in output, output
    assert "Traceback" not in output, output
    return output


def wait_for_log(server, *texts: str, timeout: float = 10.0) -> str:
    """The server's log once it holds every one of ``texts`` (bounded): the server
    writes its log from a background thread, a moment after the event."""
    deadline = time.monotonic() + timeout
    log = server.log_text()
    while not all(text in log for text in texts) and time.monotonic() < deadline:
        time.sleep(0.02)
        log = server.log_text()
    return log


def stub_for(server) -> tuple[grpc.Channel, pb_grpc.RemSvcStub]:
    channel = grpc.insecure_channel(server.target)
    return channel, pb_grpc.RemSvcStub(channel)


# -- 12.6: a misspelt name used to start a server without what it named ---------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "[auth ]\nci = tok\n",
            "line 1: section [auth ] has blanks inside the brackets; write [auth]",
        ),
        (
            "[allow_list]\nup = ^uptime$\n",
            "line 1: unknown section [allow_list]; did you mean [allowlist]?",
        ),
        ("[Allowlist]\nup = ^uptime$\n", "line 1: section [Allowlist]: write [allowlist]"),
        ("[denylists]\nrm = rm\n", "line 1: unknown section [denylists]; did you mean [denylist]?"),
        (
            "[server]\ncmd_timeout = 5\n",
            "line 2: [server] cmd_timeout: unknown key; did you mean cmd_timeout_ms?",
        ),
        ("[tls]\nEnabled = true\n", "line 2: [tls] Enabled: write enabled"),
    ],
    ids=["auth-blank", "allow_list", "Allowlist", "denylists", "cmd_timeout", "Enabled"],
)
def test_a_misspelt_section_or_key_stops_the_server_naming_the_intended_one(
    server_process, figures, text, expected
):
    output = refused_at_startup(server_process, text, figures)
    assert expected in output, output


# -- 12.6: one file, two meanings (upstream's QSettings dialect) -----------------------------

DIALECT_CASES = {
    # upstream: backspace; here it used to be the word boundary
    "word boundary": ("[denylist]\n1 = ^rm\\b\n", ["line 2", "\\b", "'^rm\\x08'", "write \\\\b"]),
    # upstream drops \. and \s whole: the rule would be "..", any two characters
    "dots": ("[denylist]\ndotdot = \\.\\.\n", ["line 2", "\\.", "Upstream reads it as ''", "[.]"]),
    # upstream splits at the comma and reads an empty pattern: the rule is dropped
    "comma": ("[allowlist]\nrange = ^x{1,3}$\n", ["line 2", "list of 2 values", "double quotes"]),
    # upstream cuts at ; and enforces "rm" alone
    "glued comment": ("[denylist]\nrm = rm;shutdown\n", ["line 2", "Upstream reads it as 'rm'"]),
    # upstream reads this '#' line as a live rule
    "hash rule": ("[allowlist]\n# 1 = ^uptime$\n", ["line 2", "live rule", "'^uptime$'"]),
    # upstream reads this '#' line as a token: never shown
    "hash token": (f"[auth]\n# ci = {TOKEN}\n", ["line 2", "live identity with a token"]),
    # upstream drops inner quotes
    "inner quotes": ('[allowlist]\necho = ^echo "hi"$\n', ["line 2", "'^echo hi$'", '\\"']),
    # upstream's toBool: 'no' is true there
    "tls no": (
        "[tls]\nenabled = no\n",
        ["[tls] enabled", "would mean true to the upstream server"],
    ),
}


@pytest.mark.parametrize(("text", "expected"), DIALECT_CASES.values(), ids=DIALECT_CASES)
def test_a_line_upstream_reads_differently_is_refused_saying_what_upstream_reads(
    server_process, figures, text, expected
):
    output = refused_at_startup(server_process, text, figures)
    for part in expected:
        assert part in output, (part, output)
    assert TOKEN not in output


def test_an_upstream_readme_style_file_fails_saying_how_to_write_it_then_starts(
    server_process, figures, tmp_path
):
    """The constructs of upstream's README example: inline comments, $HOME paths left in
    while TLS is off, numbered patterns with \\b, debug_level."""
    upstream_style = textwrap.dedent(
        """\
        [server]
        port=50051
        cmd_timeout_ms=30000          ; a comment after the value

        [tls]
        enabled=false
        cert=$HOME/certs/server.crt   ; ignored while TLS is off
        ca=                           ; empty

        [denylist]
        1=^rm\\b
        2=shutdown

        [allowlist]
        1=^echo\\b
        2=^hostname$

        [log]
        level=info                    ; trace|debug|info|warn|error
        debug_level=-1                ; off
        """
    )
    env = {"HOME": str(tmp_path)}
    output = refused_at_startup(server_process, upstream_style, figures, env=env)
    assert "line 11: [denylist] 1: the escape \\b" in output
    assert "control character" in output
    assert "write \\\\b" in output

    # Written the way upstream itself needs it (its own tests write ^rm\\b), it starts.
    fixed = upstream_style.replace("\\b", "\\\\b")
    server = server_process(fixed, env=env)
    channel, stub = stub_for(server)
    with channel:
        reply = stub.RemCmd(pb.RemCmdMsg(cmd="echo hi", tid=1), timeout=10)
        denied = run_stream(stub, [pb.RemCmdMsg(cmd="rm -rf /nothing-here", tid=1)])
        not_allowed = run_stream(stub, [pb.RemCmdMsg(cmd="echoes", tid=1)])
    assert (reply.rc, reply.out) == (0, "hi\n")
    assert denied.code == grpc.StatusCode.PERMISSION_DENIED
    assert "denylist rule '1'" in denied.details
    assert not_allowed.code == grpc.StatusCode.PERMISSION_DENIED  # \b holds: "echoes" is not "echo"
    ignored = "[log] debug_level = -1 is accepted for upstream's files and ignored"
    off = "[tls] cert is ignored because TLS is not enabled"
    log = wait_for_log(server, ignored, off)
    assert ignored in log
    assert off in log


# -- 12.6: \$NAME in a pattern used to be expanded from the environment ----------------------


def test_a_pattern_reaches_the_engine_as_written_never_expanded(server_process, figures):
    env = {"SECRET_DIR": "/srv/secret"}
    output = refused_at_startup(
        server_process, "[denylist]\nsecret = cat $SECRET_DIR\n", figures, env=env
    )
    assert "patterns are never expanded from the environment" in output
    # Escaped for the file, \\$ is the regular expression \$: a literal dollar sign.
    server = server_process("[denylist]\nsecret = cat \\\\$SECRET_DIR\n", env=env)
    channel, stub = stub_for(server)
    with channel:
        literal = run_stream(stub, [pb.RemCmdMsg(cmd="cat $SECRET_DIR", tid=1)])
        expanded = stub.RemCmd(pb.RemCmdMsg(cmd="echo cat /srv/secret", tid=1), timeout=10)
    assert literal.code == grpc.StatusCode.PERMISSION_DENIED
    assert expanded.rc == 0  # the variable's value is no part of the rule


# -- 12.6: every accepted value must start ----------------------------------------------------


def top_of_range(key) -> str:
    kind = key.kind
    if isinstance(kind, Integer):
        assert kind.high is not None, f"[{key.section}] {key.name} has no upper bound"
        return str(kind.high)
    assert isinstance(kind, Milliseconds)
    return str(kind.high)


def test_every_numeric_key_at_the_top_of_its_range_starts_and_runs(server_process, figures):
    numeric = [k for k in KEYS if isinstance(k.kind, (Integer, Milliseconds))]
    # port is left out: the launcher binds port 0 (the top, 65535, may be taken).
    chosen = [k for k in numeric if k.name != "port"]
    sections: dict[str, dict[str, str]] = {}
    for key in chosen:
        sections.setdefault(key.section, {})[key.name] = top_of_range(key)
    text = "".join(
        f"[{section}]\n" + "".join(f"{name} = {value}\n" for name, value in keys.items())
        for section, keys in sections.items()
    )
    server = server_process(text)
    channel, stub = stub_for(server)
    with channel:
        assert stub.Ping(pb.PingMsg(seq=7), timeout=10).seq == 7
        reply = stub.RemCmd(pb.RemCmdMsg(cmd="echo top", tid=1), timeout=30)
    assert (reply.rc, reply.out) == (0, "top\n")
    figures.note(f"config: a server started with {len(chosen)} numeric keys at their maximum")

    # The value that used to pass validation and crash startup (exit 1, a traceback):
    # it starts and serves now (a classic result carries at most 256 MiB of each stream).
    crashed_before = server_process("[server]\noutput_cap_bytes = 400000000\n")
    channel, stub = stub_for(crashed_before)
    with channel:
        reply = stub.RemCmd(pb.RemCmdMsg(cmd="echo big cap", tid=1), timeout=30)
    assert (reply.rc, reply.out) == (0, "big cap\n")


# -- 12.7: one pattern used to hang the server ---------------------------------------------


def test_a_catastrophic_pattern_cannot_stall_the_server(server_process, figures):
    server = server_process({"allowlist": {"echo": r"^echo( ?[A-Za-z0-9]+)*$"}})
    crafted = "echo " + "a" * 5000 + "!"  # Python's re would backtrack for ever
    channel, stub = stub_for(server)
    pings: list[float] = []

    def ping_meanwhile() -> None:
        with grpc.insecure_channel(server.target) as other:
            other_stub = pb_grpc.RemSvcStub(other)
            for seq in range(20):
                began = time.monotonic()
                other_stub.Ping(pb.PingMsg(seq=seq), timeout=20)
                pings.append(time.monotonic() - began)

    pinger = threading.Thread(target=ping_meanwhile)
    with channel:
        began = time.monotonic()
        pinger.start()
        refused = run_stream(stub, [pb.RemCmdMsg(cmd=crafted, tid=1)], timeout=30)
        took = time.monotonic() - began
        allowed = stub.RemCmd(pb.RemCmdMsg(cmd="echo still served", tid=2), timeout=10)
        pinger.join(timeout=60)
    assert refused.code == grpc.StatusCode.PERMISSION_DENIED, refused
    assert allowed.out == "still served\n"
    assert len(pings) == 20  # every ping was answered while the pattern ran
    figures.tried("catastrophic pattern inputs")
    figures.note(
        f"catastrophic pattern: a {len(crafted):,}-character crafted command refused in "
        f"{took * 1000:.0f} ms; worst Ping meanwhile {max(pings) * 1000:.0f} ms"
    )


@pytest.mark.parametrize(
    ("pattern", "construct"),
    [
        (r"^(ab)\\1$", "a backreference"),
        (r"^echo (?!rm)", "lookaround"),
        (r"^(?<=x)y", "lookaround"),
    ],
    ids=["backreference", "lookahead", "lookbehind"],
)
def test_a_pattern_the_engine_cannot_run_is_a_startup_error_not_deny_all(
    server_process, figures, pattern, construct
):
    output = refused_at_startup(server_process, f"[allowlist]\nrule = {pattern}\n", figures)
    assert "[allowlist] rule: uses " + construct in output, output
    assert "RE2" in output


# -- 12.9: auth refusals are logged with the peer, rate-limited ----------------------------


def test_bad_tokens_are_logged_with_the_peer_and_a_flood_is_thinned(server_process, figures):
    server = server_process({"auth": {"ci": TOKEN}})
    flood = 300
    bad = [("authorization", "Bearer not-the-token")]
    began = time.monotonic()
    with grpc.insecure_channel(server.target) as channel:
        stub = pb_grpc.RemSvcStub(channel)
        for seq in range(flood):
            with pytest.raises(grpc.RpcError) as caught:
                stub.Ping(pb.PingMsg(seq=seq), timeout=10, metadata=bad)
            assert caught.value.code() == grpc.StatusCode.UNAUTHENTICATED
        # One more refusal once the rate allows a line: it reports what was left out.
        deadline = time.monotonic() + 30
        sent = flood
        while "were not logged" not in server.log_text() and time.monotonic() < deadline:
            with pytest.raises(grpc.RpcError):
                stub.Ping(pb.PingMsg(seq=0), timeout=10, metadata=bad)
            sent += 1
            time.sleep(0.5)
    elapsed = time.monotonic() - began
    log = wait_for_log(server, "were not logged")
    lines = re.findall(
        r"refused /RS\.RemSvc/Ping from ipv4:127\.0\.0\.1:\d+: unknown bearer token.*", log
    )
    left_out = sum(int(n) for n in re.findall(r"\((\d+) more refused calls were not logged", log))
    figures.tried("refused bad-token calls", sent)
    figures.note(
        f"auth refusals: {sent} bad tokens in {elapsed:.1f} s, {len(lines)} log lines "
        f"naming the peer, {left_out} counted in them"
    )
    assert lines, log
    assert left_out > 0, log
    # A burst of 20 lines, then one per 3 s: never one line per call.
    assert len(lines) <= 20 + elapsed / 3 + 1
    # Every refusal is a line or is counted in one (the last one or two may be pending).
    assert sent - 2 <= len(lines) + left_out <= sent
    assert TOKEN not in log


# -- 12.9: secrets other users can read ---------------------------------------------------


def test_a_world_readable_key_or_token_file_is_warned_about(server_process, tls_files, tmp_path):
    key = tmp_path / "server.key"
    key.write_bytes(Path(tls_files.server_key).read_bytes())
    text = (
        f"[tls]\nenabled = true\ncert = {tls_files.server_cert}\nkey = {key}\n"
        f"[auth]\nci = {TOKEN}\n"
    )
    key_warning = f"[tls] key '{key}' is readable by every user of this machine"
    token_warning = "[auth] holds tokens written in the file (identities: ci)"
    key.chmod(0o644)
    previous = os.umask(0o022)  # the INI file the launcher writes: world-readable
    try:
        loose = server_process(text)
    finally:
        os.umask(previous)
    loose_log = wait_for_log(loose, key_warning, token_warning, "listening on")
    key.chmod(0o600)
    previous = os.umask(0o077)  # the INI file readable by its owner only
    try:
        tight = server_process(text)
    finally:
        os.umask(previous)
    tight_log = wait_for_log(tight, "listening on")
    assert key_warning in loose_log
    assert token_warning in loose_log
    assert TOKEN not in loose_log
    assert "listening on" in tight_log
    assert "readable by every user" not in tight_log
