"""Text from the other side, made safe to print on one line of a log or a terminal.

A caller chooses ``src`` and ``cmdusr``; a server chooses its status details and its
GetStatus message. Printed as they are, a newline in them forges a log line, and an
escape sequence repaints (or retitles, or worse) the terminal that shows them.
:func:`printable` escapes every character that is not printable the way Python
writes it in a string literal (``\\n``, ``\\x1b``, ``\\u2028``), and leaves all other
text, non-ASCII letters included, as it is.
"""

from __future__ import annotations

__all__ = ["printable"]


def printable(text: str) -> str:
    """``text`` with its control (and other non-printable) characters escaped."""
    if text.isprintable():
        return text
    return "".join(char if char.isprintable() else repr(char)[1:-1] for char in text)
