"""Reading the fenced code blocks out of the Markdown docs, so the tests can run them.

A fence's info string is ``LANG [WORD ...]``. GitHub uses the first word to pick the
syntax highlighting and ignores the rest; the tests read the rest as tags:

``/some/path`` or ``~/some/path``
    the block is the content of that file: the tests write it there (inside their
    sandbox) before running the blocks that follow.
``file=relative/path``
    the block is that file, or the next part of it, in the project a page builds
    from an empty folder (docs/plugin-authors.md); blocks naming the same file are
    joined in document order.
``no-run``
    the block installs or publishes software or changes the system (``pip install``,
    ``twine upload``, ``useradd``, ``systemctl``); the tests check it holds nothing
    else.
``server``
    a long-running server command; the tests start it in the background.
``error``
    an INI example that must be rejected by the config loader.
``policy``, ``allowed``, ``refused``, ``slips-past``
    allow/deny list examples and the commands they must (or must not) stop.
``error-message``
    text that must appear in the error raised by the ``error`` block before it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
DOCS = REPO / "docs"

_FENCE = re.compile(r"^(?P<indent> {0,3})(?P<fence>`{3,}|~{3,})(?P<info>[^`]*)$")


@dataclass(frozen=True)
class Block:
    """One fenced code block: where it is, its language, its tags and its text."""

    doc: str  # the path relative to docs/ (or to the repository, for README.md)
    line: int  # 1-based line of the opening fence
    lang: str
    tags: tuple[str, ...]
    text: str

    @property
    def where(self) -> str:
        prefix = "" if self.doc == "README.md" else "docs/"
        return f"{prefix}{self.doc}:{self.line}"

    @property
    def path(self) -> str | None:
        """The file this block is the content of, if its tags name one."""
        for tag in self.tags:
            if tag.startswith(("/", "~/")):
                return tag
        return None

    @property
    def file(self) -> str | None:
        """The project-relative file a ``file=...`` tag says this block is (part of)."""
        for tag in self.tags:
            if tag.startswith("file="):
                return tag.removeprefix("file=")
        return None

    def has(self, tag: str) -> bool:
        return tag in self.tags


def blocks(doc: str, *, section: str | None = None) -> list[Block]:
    """Every fenced block of ``docs/<doc>`` (or of README.md), in document order.

    With ``section``, only the blocks under the heading with exactly that text, up to
    the next heading of the same or a higher level.
    """
    path = REPO / doc if doc == "README.md" else DOCS / doc
    lines = path.read_text(encoding="utf-8").splitlines()
    first, last = _section_span(lines, section) if section else (0, len(lines))
    found: list[Block] = []
    index = 0
    while index < len(lines):
        match = _FENCE.match(lines[index])
        if match is None:
            index += 1
            continue
        fence = match["fence"]
        words = match["info"].split()
        start = index
        body: list[str] = []
        index += 1
        while index < len(lines) and not _closes(lines[index], fence):
            body.append(lines[index])
            index += 1
        if index >= len(lines):
            raise AssertionError(f"docs/{doc}:{start + 1}: code fence is never closed")
        index += 1
        if not first <= start < last:
            continue
        found.append(
            Block(
                doc=doc,
                line=start + 1,
                lang=words[0].lower() if words else "",
                tags=tuple(words[1:]),
                text="\n".join(body) + "\n",
            )
        )
    return found


def _section_span(lines: list[str], heading: str) -> tuple[int, int]:
    """Line range [first, last) of the section under ``heading`` (e.g. "## A tour")."""
    level = len(heading) - len(heading.lstrip("#"))
    start = next((i for i, line in enumerate(lines) if line.strip() == heading), None)
    if start is None:
        raise LookupError(heading)
    fence: str | None = None
    for index in range(start + 1, len(lines)):
        line = lines[index]
        match = _FENCE.match(line)
        if fence is None and match is not None:
            fence = match["fence"]
            continue
        if fence is not None:
            if _closes(line, fence):
                fence = None
            continue
        hashes = len(line) - len(line.lstrip("#"))
        if 0 < hashes <= level and line[hashes : hashes + 1] == " ":
            return start, index
    return start, len(lines)


def _closes(line: str, fence: str) -> bool:
    stripped = line.strip()
    return stripped.startswith(fence[0] * len(fence)) and set(stripped) == {fence[0]}


def of_lang(found: list[Block], *langs: str) -> list[Block]:
    return [block for block in found if block.lang in langs]


SHELL_LANGS = ("bash", "sh", "shell", "console")

# What a ``no-run`` block may hold: installing, publishing and system administration,
# which a test cannot do to the machine it runs on. Anything else must run.
_NO_RUN_ALLOWED = re.compile(
    r"^\s*(#.*|"
    r"(sudo\s+)?(python3 -m venv|\S*pip install|\S*twine upload|useradd|install\b|"
    r"systemctl|journalctl|"
    r"\S*jupyter lab|(\.|source) \S+/activate|chown|chmod)\b.*|)$"
)


def check_no_run(block: Block) -> None:
    """A ``no-run`` block may only install software or administer the system."""
    logical = block.text.replace("\\\n", " ").splitlines()
    for line in logical:
        if not _NO_RUN_ALLOWED.match(line):
            raise AssertionError(
                f"{block.where}: a no-run block may only install software or administer "
                f"the system; this line must run in the tests instead: {line!r}"
            )
