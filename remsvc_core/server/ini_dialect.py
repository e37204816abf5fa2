"""The INI dialect of the server's file: upstream's (Qt ``QSettings``), or a refusal.

One file may be read by both servers, so it must mean one thing. Where upstream's
reading is also what the text plainly says, this module reads it the same way:

- ``;`` starts a comment, on its own line or after a value (``port = 50051 ; why``);
- a value in double quotes is read without them, and inside them ``;`` and ``,`` are
  ordinary characters (``"[;&|]"``);
- ``\\\\`` is one backslash and ``\\"`` a double quote, so the regular expression
  ``^rm\\b`` is written ``^rm\\\\b``, as upstream's own tests write it;
- a ``#`` line is upstream's key, not a comment, but where that key means nothing to
  upstream (no ``=``, or a section whose unknown keys it ignores) it is a comment.

Everywhere else the two readings part, and the line is refused (naming the line,
what upstream would read, and how to write it for both): any other backslash escape
(``\\.``, ``\\s``, ``\\d``, ``\\b``, which upstream drops or turns into control
characters), a ``,`` outside quotes (upstream splits the value into a list and reads
it as empty), a ``;`` glued to the text before it (a comment to upstream, likely not
to the writer), double quotes that do not enclose the whole value, a ``#`` line with
``=`` in ``[auth]``, ``[allowlist]`` or ``[denylist]`` (a live token or rule to
upstream), a ``\\``, ``/`` or ``%`` in a name (upstream reads sub-sections and
character codes there), and section or key names in another case (upstream, on
Linux, would not see them).

:func:`read_ini` splits the text into sections and ``key = value`` lines, keeping
line numbers; :func:`read_value` reads one value. Neither echoes a value when asked
not to (tokens).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from remsvc_core.errors import ServerConfigError

__all__ = ["IniEntry", "IniSection", "read_ini", "read_value", "upstream_reading"]

# Sections whose every key upstream reads as a live entry (a token or a rule).
UPSTREAM_FREE_FORM = frozenset({"auth", "allowlist", "denylist"})
# Characters upstream reads differently in a section or key name.
_NAME_SPECIALS = {
    "\\": "a sub-section separator",
    "/": "a sub-section separator",
    "%": "the start of a character code (%XX)",
    '"': "a quote",
    ";": "the start of a comment",
}
# The escapes upstream knows, and the character each stands for.
_KNOWN_ESCAPES = {
    "a": "\a",
    "b": "\b",
    "f": "\f",
    "n": "\n",
    "r": "\r",
    "t": "\t",
    "v": "\v",
    '"': '"',
    "?": "?",
    "'": "'",
    "\\": "\\",
}
_HEX = "0123456789abcdefABCDEF"
_OCT = "01234567"


@dataclass(frozen=True)
class IniEntry:
    """One ``key = value`` line; ``raw`` is the text after ``=``, not yet read."""

    key: str
    raw: str
    line: int


@dataclass
class IniSection:
    """One ``[name]`` section, as written between the brackets."""

    name: str
    line: int
    entries: list[IniEntry] = field(default_factory=list)


def read_ini(text: str, source: str) -> list[IniSection]:
    """The sections of ``text`` in file order, or :class:`ServerConfigError` naming the line."""
    sections: list[IniSection] = []
    seen: dict[str, int] = {}
    current: IniSection | None = None
    # An editor's byte-order mark is no part of the first line (upstream skips it too).
    for number, line in enumerate(text.removeprefix("\ufeff").splitlines(), start=1):
        where = f"{source}: line {number}"
        stripped = line.strip()
        if not stripped or stripped.startswith(";"):
            continue
        if stripped.startswith("["):
            current = _section(stripped, where, number)
            if current.name in seen:
                raise ServerConfigError(
                    f"{source}: [{current.name}]: section given twice "
                    f"(lines {seen[current.name]} and {number})"
                )
            seen[current.name] = number
            sections.append(current)
            continue
        key, equals, raw = stripped.partition("=")
        key = key.strip()
        secret = current is not None and current.name == "auth"
        if stripped.startswith("#"):
            if equals and current is not None and current.name in UPSTREAM_FREE_FORM:
                raise ServerConfigError(_hash_line(where, current.name, key, raw, secret))
            continue  # a comment to us; to upstream a key it ignores
        if current is None:
            raise ServerConfigError(
                f"{where}: a key before any [section] header; start with [server]"
            )
        if not equals:
            shown = "" if secret else f" {_clip(stripped)!r}"
            raise ServerConfigError(
                f"{where}: [{current.name}]: line{shown} is not 'key = value', "
                "a [section] or a ; comment"
            )
        _check_name(key, f"{where}: [{current.name}] {key}", "key")
        previous = next((entry for entry in current.entries if entry.key == key), None)
        if previous is not None:
            raise ServerConfigError(
                f"{source}: [{current.name}] {key}: given twice "
                f"(lines {previous.line} and {number})"
            )
        current.entries.append(IniEntry(key, raw, number))
    return sections


def _section(stripped: str, where: str, number: int) -> IniSection:
    body, closed, rest = stripped[1:].partition("]")
    rest = rest.strip()
    if not closed:
        raise ServerConfigError(f"{where}: section header {stripped!r} has no closing ]")
    if rest and not rest.startswith(";"):
        raise ServerConfigError(
            f"{where}: text after the section header [{body}]: {rest!r}; "
            "put it on a line of its own (a comment starts with ;)"
        )
    if body != body.strip():
        raise ServerConfigError(
            f"{where}: section [{body}] has blanks inside the brackets; "
            f"write [{' '.join(body.split())}]"
        )
    if not body:
        raise ServerConfigError(f"{where}: empty section name []")
    _check_name(body, f"{where}: [{body}]", "section name")
    return IniSection(body, number)


def _check_name(name: str, where: str, what: str) -> None:
    for char, meaning in _NAME_SPECIALS.items():
        if char in name:
            raise ServerConfigError(
                f"{where}: {char!r} in a {what}: upstream reads it as {meaning}, "
                f"so the two servers would read {name!r} differently; leave it out"
            )


def _hash_line(where: str, section: str, key: str, raw: str, secret: bool) -> str:
    entry = "identity with a token" if secret else "rule"
    value = "" if secret else f" = {upstream_reading(raw)!r}"
    return (
        f"{where}: [{section}]: upstream does not read '#' as a comment: it reads this "
        f"line as a live {entry}, key {key!r}{value}. Use ; to comment it out, or remove "
        "the # to make it an entry of both servers"
    )


def read_value(raw: str, where: str, *, secret: bool = False) -> str:
    """The value of ``raw`` (the text after ``=``), read as upstream reads it.

    Raises :class:`ServerConfigError` naming ``where`` for any text the two servers
    would read differently; with ``secret`` the value is never shown.
    """
    problem = _disagreement(raw)
    if problem is None:
        return _plain_reading(raw)
    construct, fix = problem
    if secret:
        shown = ""
    else:
        reading = upstream_reading(raw)
        if isinstance(reading, list):
            shown = (
                f" Upstream reads {_clip(raw.strip())!r} as a list of {len(reading)} values "
                f"({', '.join(repr(_clip(item)) for item in reading)}), that is as an empty "
                "value: the entry is dropped."
            )
        else:
            shown = f" Upstream reads it as {_clip(reading)!r}."
    raise ServerConfigError(f"{where}: {construct}{shown} {fix}")


def _disagreement(raw: str) -> tuple[str, str] | None:
    """(what, how to fix it) for the first construct the servers read differently."""
    text = raw.lstrip(" \t")
    value = _cut_comment(text)
    if len(value) < len(text) and value and value[-1] not in " \t":
        return (
            "a ';' right after text: upstream reads everything from ';' on as a comment.",
            'Put the whole value in double quotes ("...") to keep the ;, or put a '
            "blank before it if it starts a comment.",
        )
    quoted = False
    index = 0
    while index < len(value):
        char = value[index]
        if char == "\\":
            escaped = value[index + 1 : index + 2]
            if escaped in ("\\", '"'):
                index += 2
                continue
            if not escaped:
                return (
                    "a backslash ends the line, which upstream reads as 'continue on the "
                    "next line'.",
                    "Write \\\\ for a backslash.",
                )
            return (
                f"the escape \\{escaped} is read differently by upstream "
                f"({_escape_meaning(escaped)}).",
                f"To mean the two characters \\{escaped} (the regular expression "
                f"\\{escaped}), write \\\\{escaped}, which both servers read that way"
                + (", or write [.] for a literal dot." if escaped == "." else "."),
            )
        if char == '"':
            quoted = not quoted
        elif char == "," and not quoted:
            return (
                "a ',' outside double quotes.",
                'Put the whole value in double quotes ("...") so both servers read it whole.',
            )
        index += 1
    if quoted:
        return ("a double quote is never closed.", 'Close it, or write \\" for a quote.')
    value = value.rstrip(" \t")
    inner = value[1:-1] if len(value) >= 2 and value[0] == value[-1] == '"' else value
    if _unescaped_quote(inner):
        return (
            "double quotes that do not enclose the whole value: upstream drops them.",
            'Write \\" for a quote inside a value, or quote the whole value.',
        )
    return None


def _unescaped_quote(text: str) -> bool:
    index = 0
    while index < len(text):
        if text[index] == "\\":
            index += 2
            continue
        if text[index] == '"':
            return True
        index += 1
    return False


def _escape_meaning(escaped: str) -> str:
    if escaped in _KNOWN_ESCAPES:
        meant = _KNOWN_ESCAPES[escaped]
        if meant == escaped:
            return f"as {escaped!r} alone"
        return f"as the control character {meant!r}"
    if escaped == "x":
        return "as a character given by hex digits, or as nothing"
    if escaped in _OCT:
        return "as a character given by octal digits"
    return "it drops the backslash and the character after it"


def _plain_reading(raw: str) -> str:
    """The value of a ``raw`` that has passed :func:`_disagreement`: the text before a
    comment, blanks trimmed, enclosing quotes removed, ``\\\\`` and ``\\"`` unescaped."""
    value = _cut_comment(raw).strip(" \t")
    if len(value) >= 2 and value[0] == value[-1] == '"':
        value = value[1:-1]
    out: list[str] = []
    index = 0
    while index < len(value):
        if value[index] == "\\":
            index += 1
        out.append(value[index])
        index += 1
    return "".join(out)


def upstream_reading(raw: str) -> str | list[str]:
    """What upstream (``QSettings``) reads for the value text ``raw``: a string, or
    the list it splits an unquoted ``,`` into. Used to tell the operator, never to
    configure anything."""
    items: list[str] = []
    current: list[str] = []
    quoted = item_quoted = False
    text = _cut_comment(raw)
    index = _skip_blanks(text, 0)
    while index < len(text):
        char = text[index]
        index += 1
        if char == "\\":
            if index >= len(text):
                break
            escaped = text[index]
            index += 1
            if escaped in _KNOWN_ESCAPES:
                current.append(_KNOWN_ESCAPES[escaped])
            elif escaped == "x":
                digits = _run(text, index, _HEX)
                if digits:
                    current.append(chr(int(digits, 16) % 0x110000))
                index += len(digits)
            elif escaped in _OCT:
                digits = escaped + _run(text, index, _OCT)
                current.append(chr(int(digits, 8) % 0x110000))
                index += len(digits) - 1
            # any other escaped character is dropped with its backslash
        elif char == '"':
            quoted = not quoted
            item_quoted = True
            if not quoted:
                index = _skip_blanks(text, index)
        elif char == "," and not quoted:
            items.append(_finish(current, item_quoted))
            current, item_quoted = [], False
            index = _skip_blanks(text, index)
        else:
            current.append(char)
    last = _finish(current, item_quoted)
    return [*items, last] if items else last


def _cut_comment(raw: str) -> str:
    quoted = False
    index = 0
    while index < len(raw):
        char = raw[index]
        if char == "\\":
            index += 2
            continue
        if char == '"':
            quoted = not quoted
        elif char == ";" and not quoted:
            return raw[:index]
        index += 1
    return raw


def _skip_blanks(text: str, index: int) -> int:
    while index < len(text) and text[index] in " \t":
        index += 1
    return index


def _run(text: str, index: int, alphabet: str) -> str:
    end = index
    while end < len(text) and text[end] in alphabet:
        end += 1
    return text[index:end]


def _finish(chars: list[str], quoted: bool) -> str:
    value = "".join(chars)
    return value if quoted else value.rstrip(" \t")


def _clip(text: str, limit: int = 80) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."
