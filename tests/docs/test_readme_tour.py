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


# -- the tour's prerequisites, as written ----------------------------------------------

TOUR_INSTALL = '".[pandas]"'


@pytest.fixture(scope="module")
def pandas_only_python(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """A fresh venv with exactly what the tour says: ``pip install ".[pandas]"`` (no
    Airflow, no test tools), the way a reader who activated it has it."""
    import subprocess
    import sys

    venv = tmp_path_factory.mktemp("tour-venv")
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    python = venv / "bin" / "python"
    done = subprocess.run(
        [str(python), "-m", "pip", "install", "-q", f"{REPO}[pandas]"],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return python


@pytest.mark.slow
def test_the_tour_runs_with_only_what_it_says_to_install(
    client_site: Site, pandas_only_python: Any
) -> None:
    """Every block but the DAG one runs with the pandas extra alone, with the venv's
    bin/ on PATH (``remsvc`` and ``python`` are the venv's); the DAG block needs Airflow,
    as the tour says."""
    intro = readme_tour_intro()
    assert "source .venv/bin/activate" in intro
    assert f"pip install {TOUR_INSTALL}" in intro
    assert 'pip install ".[airflow]"' in intro
    client_site.python = pandas_only_python
    python = of_lang(tour(), "python")
    needs_airflow = [block for block in python if "airflow" in block.text]
    assert len(needs_airflow) == 1  # the DAG authors' block, and only it

    done = client_site.run_python([block for block in python if block not in needs_airflow])
    for block in of_lang(tour(), *SHELL_LANGS):
        if not block.has("no-run"):
            client_site.run_shell(block)
    with pytest.raises(AssertionError, match=r"No module named '(airflow|pendulum)'"):
        client_site.run_python(needs_airflow)

    assert done.stdout.count("=== ") == len(python) - 1


def readme_tour_intro() -> str:
    text = (REPO / "README.md").read_text(encoding="utf-8")
    section = text.split(HEADING, 1)[1]
    return section.split("### ", 1)[0]
