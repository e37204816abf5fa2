"""The INI dialect: read as upstream's QSettings reads it where that is plain, refused where not.

Each refused case says what upstream would read; ``upstream_reading`` is checked
against QSettings' documented behaviour (escapes, quotes, ``;`` comments, ``,``
lists), so the messages tell the truth about the other server.
"""

from __future__ import annotations

import pytest

from remsvc_core.errors import ServerConfigError
from remsvc_core.server.config import parse_config
from remsvc_core.server.ini_dialect import read_ini, read_value, upstream_reading

ACCEPTED = [
    # (raw value after "=", what both servers read)
    ("^uptime$", "^uptime$"),
    ("  50051   ", "50051"),
    ("30000          ; an inline comment", "30000"),
    ("30000\t; after a tab", "30000"),
    ('"[;&|]"', "[;&|]"),
    ('"^(a|b){1,3}$"', "^(a|b){1,3}$"),
    ('" spaced "', " spaced "),
    ('"quoted" ; with a comment', "quoted"),
    ("^rm\\\\b", "^rm\\b"),
    ("C:\\\\temp", "C:\\temp"),
    ('say \\"hi\\"', 'say "hi"'),
    ('"a\\\\b"', "a\\b"),
    ("", ""),
    ('""', ""),
    ("; only a comment", ""),
    ("x # not a comment to either", "x # not a comment to either"),
]


@pytest.mark.parametrize(("raw", "value"), ACCEPTED)
def test_what_both_servers_read_the_same_way_is_read_as_upstream_does(raw, value):
    assert read_value(raw, "t") == value
    assert upstream_reading(raw) == value


REFUSED = [
    # (raw, what upstream reads, a part of the message)
    ("^rm\\b", "^rm\x08", "the escape \\b"),
    ("\\.\\.", "", "the escape \\."),
    ("\\s+", "+", "the escape \\s"),
    ("\\d{3}", "{3}", "the escape \\d"),
    ("\\x41", "A", "the escape \\x"),
    ("\\101", "A", "the escape \\1"),
    ("a\\tb", "a\tb", "the escape \\t"),
    ("a\\", "a", "a backslash ends the line"),
    ("a,b", ["a", "b"], "a ',' outside double quotes"),
    ("a, b ,c", ["a", "b", "c"], "a ',' outside double quotes"),
    ("rm;shutdown", "rm", "a ';' right after text"),
    ('^echo "hi"$', "^echo hi$", "double quotes that do not enclose the whole value"),
    ('"a"b', "ab", "double quotes that do not enclose the whole value"),
    ('"open', "open", "a double quote is never closed"),
]


@pytest.mark.parametrize(("raw", "upstream", "problem"), REFUSED)
def test_what_the_servers_would_read_differently_is_refused(raw, upstream, problem):
    assert upstream_reading(raw) == upstream
    with pytest.raises(ServerConfigError) as caught:
        read_value(raw, "f.ini: line 3: [denylist] x")
    message = str(caught.value)
    assert message.startswith("f.ini: line 3: [denylist] x: ")
    assert problem in message
    shown = repr(upstream) if isinstance(upstream, str) else f"list of {len(upstream)} values"
    assert shown in message


def test_a_secret_value_is_never_shown():
    token = "tok,en-with-a-comma"
    with pytest.raises(ServerConfigError) as caught:
        read_value(token, "f.ini: line 2: [auth] ci", secret=True)
    assert "tok" not in str(caught.value)


def test_sections_keep_their_lines_and_hash_lines_are_comments_where_upstream_ignores_them():
    sections = read_ini(
        "# top comment\n; another\n[server]\n# port = 1\nport = 2\n\n[log]\nlevel = info\n",
        "f.ini",
    )
    assert [(s.name, s.line) for s in sections] == [("server", 3), ("log", 7)]
    assert [(e.key, e.raw.strip(), e.line) for e in sections[0].entries] == [("port", "2", 5)]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("[allowlist]\n# 1 = ^uptime$\n", "reads this line as a live rule, key '# 1' = '^uptime$'"),
        ("[auth]\n#ci = secret-value\n", "live identity with a token, key '#ci'"),
        ("[server]\nport = 1\n[server]\n", "[server]: section given twice (lines 1 and 3)"),
        ("[server]\nport = 1\nport = 2\n", "[server] port: given twice (lines 2 and 3)"),
        ("[server\n", "section header '[server' has no closing ]"),
        ("[server] port = 1\n", "text after the section header [server]"),
        ("[server]\njust text\n", "line 2: [server]: line 'just text' is not 'key = value'"),
        ("[allowlist]\na/b = ^x$\n", "'/' in a key: upstream reads it as a sub-section separator"),
        ("[auth]\nci%41 = t\n", "'%' in a key"),
        ("[]\n", "empty section name"),
    ],
)
def test_lines_that_cannot_mean_one_thing_are_refused_with_their_line(text, expected):
    with pytest.raises(ServerConfigError) as caught:
        read_ini(text, "f.ini")
    assert str(caught.value).startswith("f.ini: ")
    assert expected in str(caught.value)
    assert "secret-value" not in str(caught.value)


def test_a_byte_order_mark_is_no_part_of_the_first_section():
    assert parse_config("\ufeff[server]\nport = 6000\n").port == 6000


def test_a_token_line_without_equals_is_not_echoed():
    with pytest.raises(ServerConfigError) as caught:
        parse_config("[auth]\nsecret-token-alone\n", source="f.ini")
    assert "secret-token-alone" not in str(caught.value)
    assert "line 2: [auth]: line is not 'key = value'" in str(caught.value)


def test_a_value_in_quotes_keeps_what_upstream_keeps():
    config = parse_config('[denylist]\nchain = "[;&|]"\n[allowlist]\nrange = "^x{1,3}$"\n')
    assert config.denylist == [("chain", "[;&|]")]
    assert config.allowlist == [("range", "^x{1,3}$")]
