"""The README tour runs: its python and shell examples, its INI file, its entry point.

These tests read README.md's "## A tour" section, so the README cannot show an
example that does not run.
"""

from __future__ import annotations

import re
import shutil
from typing import Any

import pytest
from docs_blocks import REPO, SHELL_LANGS, Block, blocks, check_no_run, of_lang
from docs_site import Site

from remsvc_core.server.config import parse_config

HEADING = "## A tour"


def tour() -> list[Block]:
    found = blocks("README.md", section=HEADING)
    assert found, f"no code blocks under {HEADING!r} in README.md"
    return found


def test_every_tour_block_is_tested() -> None:
    for block in tour():
        assert block.lang in (*SHELL_LANGS, "python", "ini", "toml"), block.where


def test_tour_python_and_shell_examples_run(client_site: Site) -> None:
    found = tour()
    python = of_lang(found, "python")
    assert len(python) >= 3  # analysts, DAG authors, plugin authors
    done = client_site.run_python(python)
    assert done.stdout.count("=== ") == len(python)
    shell = of_lang(found, *SHELL_LANGS)
    assert shell
    for block in shell:
        if block.has("no-run"):
            check_no_run(block)
        else:
            client_site.run_shell(block)


def test_tour_server_config_loads(client_site: Site, tls_files: Any) -> None:
    tls_dir = client_site.sandboxed("/etc/remsvc/tls")
    tls_dir.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(tls_files.server_cert, tls_dir / "server.crt")
    shutil.copyfile(tls_files.server_key, tls_dir / "server.key")
    env = {"REMSVC_TOKEN_AIRFLOW_PROD": "tour-token"}
    inis = of_lang(tour(), "ini")
    assert inis
    for block in inis:
        config = parse_config(client_site.localize(block.text), source=block.where, env=env)
        assert config.tls_enabled
        assert config.identities == ["airflow-prod"]
        assert config.allowlist


def test_tour_entry_point_names_a_function_the_tour_defines() -> None:
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+
    found = tour()
    defined = {
        name
        for block in of_lang(found, "python")
        for name in re.findall(r"^def (\w+)", block.text, re.M)
    }
    tomls = of_lang(found, "toml")
    assert tomls
    for block in tomls:
        handlers = tomllib.loads(block.text)["project"]["entry-points"]["remsvc.handlers"]
        for name, target in handlers.items():
            module, _, attribute = target.partition(":")
            assert module, block.where
            assert attribute == name, block.where
            assert attribute in defined, f"{block.where}: {attribute} is not defined in the tour"


@pytest.mark.parametrize("heading", ["## A tour", "## What you get"])
def test_readme_has_the_tour_sections(heading: str) -> None:
    lines = (REPO / "README.md").read_text(encoding="utf-8").splitlines()
    assert heading in lines
