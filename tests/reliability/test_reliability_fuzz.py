"""Bad input, fuzzed: a clear error or a correct run, never a crash, a hang or a leak.

Property-based tests (hypothesis, bounded with ``max_examples`` and no deadline) over
what users hand us: command batches, handler specs, connection extras and URIs,
call metadata and server INI files. "A clear error" means a
:class:`~remsvc_core.errors.RemSvcError` (all of ours are also ``ValueError`` or
``LookupError`` where that fits); anything else escaping is a crash. Every error
text, with its whole traceback, is also checked for the bearer token it was given.
"""

from __future__ import annotations

import json
import shlex
import string
import traceback
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, settings, strategies as st

from remsvc_core.commands import Command, validate_commands
from remsvc_core.connection import EXTRA_FIELDS, settings_from_fields, settings_from_uri
from remsvc_core.engine import RetryPolicy, run_commands_sync
from remsvc_core.errors import (
    CommandValidationError,
    HandlerError,
    RemSvcError,
    ServerConfigError,
    SettingsError,
)
from remsvc_core.handlers import ResultPipeline, resolve_handler
from remsvc_core.server.config import parse_config
from remsvc_core.server.embedded import EmbeddedServer
from remsvc_core.settings import ChannelSettings, normalise_metadata

pytestmark = [pytest.mark.reliability, pytest.mark.timeout(240)]


def fuzz(max_examples: int) -> Any:
    """Hypothesis settings for this suite: bounded examples, no per-example deadline."""
    return settings(
        max_examples=max_examples,
        deadline=None,
        suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    )


SECRET = "tok-fuzz-5e1c7d0a9b2f4c38"
AUTH_TOKEN = "tok-fuzz-ini-0d5b8e61c2a4"
NO_RETRY = RetryPolicy(attempts=1)


def attempt(call: Any, *args: Any, allowed: type[BaseException], **kwargs: Any) -> Any:
    """``(value, None)`` from ``call``, or ``(None, error)`` for an ``allowed`` error.

    Anything else propagates and fails the test: that is a crash.
    """
    try:
        return call(*args, **kwargs), None
    except allowed as exc:
        return None, exc


def full_text(exc: BaseException) -> str:
    """The exception as a user would see it: message, chain and traceback."""
    return "".join(traceback.format_exception(exc))


# -- strategies ---------------------------------------------------------------------------

# Text that stresses encoders: every plane, controls, NUL, lone surrogates, blanks.
nasty_text = st.one_of(
    st.text(),
    st.text(alphabet=st.characters(codec="utf-8")),
    st.sampled_from(["", " ", "\t\n", "\x00", "echo \x00 hi", "\ud800", "e\u0301", "\u202e"]),
    st.text(alphabet=string.whitespace, min_size=1),
)
json_scalars = st.one_of(
    st.none(), st.booleans(), st.integers(), st.floats(allow_nan=True), nasty_text
)
json_values = st.recursive(
    json_scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)
command_items = st.one_of(
    nasty_text,
    st.dictionaries(
        st.sampled_from(["cmd", "cmdtyp", "cmdusr", "src", "tid", "hsh", "CMD", ""]),
        json_values,
        max_size=5,
    ),
    st.fixed_dictionaries(
        {"cmd": nasty_text},
        optional={
            "cmdtyp": st.one_of(st.sampled_from([0, 1, 2, -1, True, 1.0, "0"]), json_scalars),
            "cmdusr": st.one_of(st.just(""), nasty_text),
            "src": nasty_text,
        },
    ),
    json_scalars,
    st.builds(Command, tid=st.integers(), cmd=st.text()),
)
command_batches = st.one_of(
    st.lists(command_items, max_size=8),
    json_scalars,
    st.binary(max_size=8),
    st.dictionaries(st.text(max_size=4), json_values, max_size=3),
)


@pytest.fixture(scope="module")
def echo_server() -> Iterator[Any]:
    """A real grpc server that answers every command without running it (fast)."""
    from support.misbehaving_server import MisbehavingServer

    with MisbehavingServer() as server:
        yield server


@pytest.fixture(scope="module")
def real_server() -> Iterator[EmbeddedServer]:
    with EmbeddedServer(cmd_timeout_ms=10_000) as server:
        yield server


# -- command batches ----------------------------------------------------------------------


@fuzz(400)
@given(batch=command_batches)
@example(batch=["echo \x00 hi"])
@example(batch=[{"cmd": "id", "cmdusr": "root\x00"}])
def test_command_batches_are_validated_or_refused_clearly(batch, figures):
    figures.tried("command batches")
    commands, error = attempt(validate_commands, batch, allowed=CommandValidationError)
    if error is not None:
        assert "commands" in str(error), str(error)
        return
    assert [c.tid for c in commands] == list(range(1, len(commands) + 1))
    for command in commands:
        assert command.cmd.strip(), "a blank command got through"
        assert "\x00" not in command.cmd, "a NUL byte got through: no shell can run it"
        assert command.cmdtyp in (0, 1)


@fuzz(120)
@given(batch=command_batches)
@example(batch=["echo \x00 hi"])
def test_command_batches_run_or_fail_before_sending(batch, echo_server, figures):
    """Whatever comes in: a CommandValidationError before anything is sent, or a full run."""
    figures.tried("command batches (sent)")
    before = len(echo_server.received)
    try:
        outcome = run_commands_sync(
            batch, echo_server.settings(), stream_timeout=20, retry=NO_RETRY
        )
    except CommandValidationError:
        assert len(echo_server.received) == before, "a refused batch was partly sent"
        return
    assert outcome.complete, outcome.describe_failure()
    for command in outcome.commands:
        assert outcome.results[command.tid].out == f"ran {command.cmd}\n"


shell_text = st.text(
    alphabet=st.characters(codec="utf-8", exclude_characters="\x00"), min_size=1, max_size=200
)


@fuzz(25)
@given(texts=st.lists(shell_text, min_size=1, max_size=6))
def test_unicode_survives_a_real_shell_round_trip(texts, real_server, figures):
    figures.tried("unicode commands (real shell)", len(texts))
    commands = [f"printf '%s' {shlex.quote(text)}" for text in texts]
    outcome = run_commands_sync(commands, real_server.settings(), stream_timeout=60)
    assert outcome.complete, outcome.describe_failure()
    assert [r.out for r in outcome.ordered_results()] == texts


def test_very_long_and_very_many_commands(real_server, echo_server, figures):
    # 100 KB of command line through a real shell comes back whole; 200 KB is more
    # than Linux lets one argument be (128 KiB), which the server reports as rc 127.
    long_text = "x" * 100_000
    too_long = "y" * 200_000
    outcome = run_commands_sync(
        [f"printf '%s' {long_text}", f"printf '%s' {too_long}", "echo after"],
        real_server.settings(),
        stream_timeout=60,
    )
    assert outcome.complete, outcome.describe_failure()
    assert outcome.results[1].out == long_text
    assert outcome.results[2].rc == 127
    assert "Argument list too long" in outcome.results[2].err, outcome.results[2].err
    assert outcome.results[3].out == "after\n"
    # Ten thousand commands in one batch (validated, sent, answered, in order).
    many = [f"echo {n}" for n in range(10_000)]
    outcome = run_commands_sync(many, echo_server.settings(), stream_timeout=120)
    assert outcome.complete, outcome.describe_failure()
    assert [r.cmd for r in outcome.ordered_results()] == many
    figures.tried("long and many commands", 10_003)


def test_a_command_over_the_servers_message_limit_fails_alone(real_server, figures):
    huge = "echo " + "y" * (65 * 1024 * 1024)  # over the server's 64 MiB receive limit
    outcome = run_commands_sync(
        ["echo before", huge], real_server.settings(), stream_timeout=60, retry=NO_RETRY
    )
    figures.tried("oversized command")
    assert outcome.status_code == "RESOURCE_EXHAUSTED", outcome.status_details
    assert outcome.missing_tids == [2]
    # The server is unharmed.
    assert run_commands_sync(["echo ok"], real_server.settings(), stream_timeout=30).complete


# -- handler specs ------------------------------------------------------------------------

handler_names = st.sampled_from(
    ["sorted", "dataframe", "rc_filter", "verify_hash", "nope", "", " sorted ", "a:b", ":"]
)
handler_steps = st.one_of(
    handler_names,
    st.fixed_dictionaries(
        {"name": st.one_of(handler_names, json_values)},
        optional={"options": json_values},
    ),
    st.dictionaries(st.text(max_size=6), json_values, max_size=3),
    json_scalars,
)
handler_specs = st.one_of(
    st.none(),
    handler_steps,
    st.lists(handler_steps, max_size=4),
    st.lists(handler_steps, max_size=3).map(json.dumps),
    st.lists(handler_steps, max_size=3).map(repr),
    st.text(max_size=30).map(lambda text: "[" + text),
    st.text(max_size=30).map(lambda text: "{" + text),
)
SAMPLE_RESULTS = {
    1: {"tid": 1, "rc": 0, "out": "a\n", "err": "", "hsh": "e3b0c442", "cmd": "echo a"},
    2: {"tid": 2, "rc": 3, "out": "", "err": "boom\n", "hsh": "", "cmd": "false"},
}


@fuzz(400)
@given(spec=handler_specs)
@example(spec="{[1]: 2}")
def test_handler_specs_resolve_or_fail_clearly(spec, figures):
    figures.tried("handler specs")
    try:
        pipeline = resolve_handler(spec)
    except HandlerError:
        return
    assert isinstance(pipeline, ResultPipeline)
    assert pipeline.accepted_rcs
    attempt(pipeline.apply, SAMPLE_RESULTS, allowed=HandlerError)


# -- connection extras, URIs and metadata -----------------------------------------------------

extra_keys = st.one_of(
    st.sampled_from(EXTRA_FIELDS),
    st.sampled_from(["extra", "__extra__", "extra__remsvc__use_ssl", "bearer_tokn", ""]),
    st.text(max_size=10),
)
extra_values = st.one_of(
    st.sampled_from(["true", "false", "yes", "0", "", "maybe", "/nonexistent/ca.pem"]),
    json_values,
)


def with_token(extra: dict[str, Any], where: str) -> Any:
    """Put the token where a user would: the bearer_token extra, plain or nested."""
    if where == "plain":
        return {**extra, "bearer_token": SECRET}
    if where == "nested":
        return {**extra, "extra": json.dumps({"bearer_token": SECRET})}
    if where == "json":
        return json.dumps({**extra, "bearer_token": SECRET})
    return extra


extras = st.one_of(
    st.builds(
        with_token,
        st.dictionaries(extra_keys, extra_values, max_size=5),
        st.sampled_from(["plain", "nested", "json", "none"]),
    ),
    st.text(max_size=20),
    json_scalars,
)


@fuzz(400)
@given(
    host=st.one_of(st.none(), st.sampled_from(["localhost", "::1", "h"]), st.text(max_size=12)),
    port=st.one_of(st.none(), st.integers(-5, 70000), st.text(max_size=6)),
    extra=extras,
)
def test_connection_extras_give_settings_or_a_clear_error(host, port, extra, figures):
    figures.tried("connection extras")
    built, error = attempt(settings_from_fields, host, port, extra, allowed=SettingsError)
    if error is not None:
        assert SECRET not in full_text(error)
        return
    assert isinstance(built, ChannelSettings)
    assert SECRET not in repr(built)
    assert SECRET not in str(built)
    assert SECRET not in built.safe_description()


uri_parts = st.one_of(
    st.text(max_size=15),
    st.sampled_from(["use_ssl=true", "use_ssl=maybe", f"bearer_token={SECRET}", "__extra__={"]),
)


@fuzz(300)
@given(
    netloc=st.one_of(
        st.sampled_from(["h:50051", "[::1]:1", "h:99999", "h:x"]), st.text(max_size=12)
    ),
    query=st.lists(uri_parts, max_size=3).map("&".join),
    scheme=st.sampled_from(["remsvc", "grpc", "REMSVC", ""]),
)
@example(netloc="[", query="", scheme="remsvc")
def test_connection_uris_give_settings_or_a_clear_error(netloc, query, scheme, figures):
    figures.tried("connection URIs")
    uri = f"{scheme}://{netloc}?{query}"
    built, error = attempt(settings_from_uri, uri, allowed=SettingsError)
    if error is not None:
        assert SECRET not in full_text(error)
        return
    assert SECRET not in repr(built)


metadata_keys = st.one_of(
    st.text(max_size=10),
    st.text(alphabet=string.ascii_letters + string.digits + "-_.", min_size=1, max_size=12),
    st.sampled_from(
        ["x-bin", "X-Trace", ":authority", "grpc-foo", "content-type", "a b", "é", "x\n"]
    ),
)
metadata_values = st.one_of(
    st.text(max_size=10),
    st.text(alphabet=string.printable, max_size=12),
    st.sampled_from(["", " padded ", "caf\u00e9", "a\nb", "\x7f"]),
)


@fuzz(150)
@given(pairs=st.lists(st.tuples(metadata_keys, metadata_values), max_size=3))
@example(pairs=[("x-bin", "abc")])
@example(pairs=[(":authority", "x")])
@example(pairs=[("a b", "x")])
@example(pairs=[("x", "caf\u00e9")])
@example(pairs=[("content-type", "")])
@example(pairs=[("grpc-timeout", "1S")])
def test_metadata_is_refused_clearly_or_sent(pairs, echo_server, figures):
    """Metadata gRPC cannot send must be refused up front, not end in INTERNAL or a hang."""
    figures.tried("metadata")
    try:
        normalise_metadata(pairs)
    except SettingsError:
        return
    outcome = run_commands_sync(
        ["echo ok"], echo_server.settings(), stream_timeout=10, metadata=pairs, retry=NO_RETRY
    )
    assert outcome.complete, (pairs, outcome.status_code, outcome.status_details)
    sent = echo_server.metadata[-1]
    for key, value in normalise_metadata(pairs):
        assert sent.get(key) == value, (key, value, sent)


# -- server INI files --------------------------------------------------------------------------

ini_sections = st.sampled_from(
    ["server", "tls", "auth", "allowlist", "denylist", "log", "SERVER", "other", ""]
)
ini_keys = st.one_of(
    st.sampled_from(
        [
            "port",
            "host",
            "cmd_timeout_ms",
            "max_parallel",
            "output_cap_bytes",
            "enabled",
            "cert",
            "key",
            "ca",
            "file",
            "level",
            "allow_insecure_auth",
            "drain_grace_ms",
            "ops",
        ]
    ),
    st.text(alphabet=string.ascii_letters + "_", min_size=1, max_size=8),
)
ini_values = st.one_of(
    st.sampled_from(
        [
            "0",
            "1",
            "-1",
            "65536",
            "true",
            "maybe",
            "",
            "$HOME",
            "${NOPE_UNSET}",
            "$$",
            "${}",
            "(",
            "^uptime$",
            "/nonexistent.pem",
            "9" * 5000,
            "127.0.0.1",
            "0.0.0.0",
            SECRET,
        ]
    ),
    st.text(max_size=20).map(lambda text: text.replace("\n", " ").replace("\r", " ")),
)


@st.composite
def ini_texts(draw: Any) -> str:
    if draw(st.booleans()):
        return draw(st.text(max_size=80))
    lines = []
    for _ in range(draw(st.integers(0, 4))):
        section = draw(ini_sections)
        lines.append(f"[{section}]")
        for _ in range(draw(st.integers(0, 4))):
            # Only [auth] ever holds the token, so any error text showing it leaked it.
            value = AUTH_TOKEN if section == "auth" and draw(st.booleans()) else draw(ini_values)
            lines.append(f"{draw(ini_keys)} = {value}")
    return "\n".join(lines)


@fuzz(500)
@given(text=ini_texts())
def test_ini_files_parse_or_fail_clearly(text, figures):
    figures.tried("INI files")
    config, error = attempt(
        parse_config, text, source="fuzz.ini", env={"HOME": "/root"}, allowed=ServerConfigError
    )
    if error is not None:
        assert str(error).startswith("fuzz.ini"), str(error)
        assert AUTH_TOKEN not in full_text(error)
        return
    assert AUTH_TOKEN not in repr(config)


# -- the error hierarchy itself ---------------------------------------------------------------


def test_every_clear_error_is_a_remsvc_error_with_a_standard_base():
    for error in (CommandValidationError, SettingsError, ServerConfigError):
        assert issubclass(error, RemSvcError)
        assert issubclass(error, ValueError)
    assert issubclass(HandlerError, RemSvcError)
