"""Every example in the index, the analysts' guide, the CLI reference and the architecture
page runs.

Python blocks of a page run in order in one fresh interpreter (one namespace, like a
reader pasting them into a session); shell blocks run one by one with
``bash -euo pipefail``. Both run in a sandbox where ``db1.example.com:50051`` is a
real TLS server that wants a bearer token (see docs_site.py for the exact rewrites).
"""

from __future__ import annotations

import pytest
from docs_blocks import SHELL_LANGS, blocks, check_no_run, of_lang
from docs_site import Site

CLIENT_DOCS = ("index.md", "analysts.md", "cli.md")


@pytest.mark.parametrize("doc", CLIENT_DOCS)
def test_shell_examples_run(doc: str, client_site: Site) -> None:
    shell = of_lang(blocks(doc), *SHELL_LANGS)
    runnable = [block for block in shell if not block.has("no-run")]
    assert runnable, f"docs/{doc} has no shell examples to run"
    for block in shell:
        if block.has("no-run"):
            check_no_run(block)
        else:
            client_site.run_shell(block)


@pytest.mark.parametrize("doc", ["index.md", "analysts.md", "architecture.md"])
def test_python_examples_run(doc: str, client_site: Site) -> None:
    python = of_lang(blocks(doc), "python")
    assert python, f"docs/{doc} has no python examples"
    done = client_site.run_python(python)
    # Every block reported in, so none was skipped.
    assert done.stdout.count("=== docs/") == len(python)


@pytest.mark.parametrize(
    ("doc", "also_allowed"),
    [("index.md", ()), ("analysts.md", ()), ("cli.md", ()), ("architecture.md", ("text",))],
)
def test_every_block_is_an_example_that_runs(doc: str, also_allowed: tuple[str, ...]) -> None:
    """No block slips through: each is shell or python (both run), or a diagram."""
    for block in blocks(doc):
        assert block.lang in (*SHELL_LANGS, "python", *also_allowed), (
            f"{block.where}: fenced block in language {block.lang!r} is not run by any test"
        )
