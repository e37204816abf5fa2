"""Every relative link in the docs and the README leads somewhere that exists.

A newcomer finds their way by following links; a broken one (a renamed page, a
heading that changed) is a dead end. Anchors are checked against GitHub's way of
turning headings into ids.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from docs_blocks import DOCS, REPO

_FENCED = re.compile(r"^ {0,3}(`{3,}|~{3,}).*?^ {0,3}\1[ \t]*$", re.M | re.S)
_INLINE_CODE = re.compile(r"`[^`\n]*`")
_LINK = re.compile(r"\[[^\]\n]*\]\(([^)\s]+)\)")
_HEADING = re.compile(r"^#{1,6} +(.+?) *#*$", re.M)

PAGES = sorted([*DOCS.glob("*.md"), REPO / "README.md"])


def _prose(path: Path) -> str:
    text = _FENCED.sub("", path.read_text(encoding="utf-8"))
    return _INLINE_CODE.sub("", text)


def _slug(heading: str) -> str:
    """GitHub's heading id: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # a link: its text
    text = text.replace("`", "").lower()
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def anchors(path: Path) -> set[str]:
    seen: dict[str, int] = {}
    found = set()
    for heading in _HEADING.findall(_FENCED.sub("", path.read_text(encoding="utf-8"))):
        slug = _slug(heading)
        count = seen.get(slug, 0)
        seen[slug] = count + 1
        found.add(slug if count == 0 else f"{slug}-{count}")
    return found


def _base(page: Path) -> Path:
    # The README tour proposal is written for README.md, at the repository root.
    return REPO if page.name == "README.md" else page.parent


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_relative_links_resolve(page: Path) -> None:
    problems = []
    for target in _LINK.findall(_prose(page)):
        if re.match(r"^[a-z][a-z0-9+.-]*:", target):  # http:, https:, mailto:
            continue
        path_part, _, anchor = target.partition("#")
        destination = (_base(page) / path_part).resolve() if path_part else page
        if not destination.exists():
            problems.append(f"{target}: {destination} does not exist")
        elif anchor and destination.suffix == ".md" and anchor not in anchors(destination):
            problems.append(f"{target}: no heading with id {anchor!r} in {destination.name}")
    assert not problems, f"{page.name}: " + "; ".join(problems)


def test_slugs_follow_github() -> None:
    assert _slug("Compatibility with the upstream C++ server") == (
        "compatibility-with-the-upstream-c-server"
    )
    assert _slug("`remsvc run`") == "remsvc-run"
    assert _slug("3. Per-tid hooks") == "3-per-tid-hooks"
    assert _slug("In Airflow: who runs what, where") == "in-airflow-who-runs-what-where"


def test_index_links_every_page() -> None:
    index = _prose(DOCS / "index.md")
    for page in DOCS.glob("*.md"):
        if page.name != "index.md":
            assert f"({page.name})" in index, f"docs/index.md does not link {page.name}"
