"""docs/plugin-authors.md, followed the way a team would, from an empty folder.

The page builds a handler package, ``acme-json-lines``, registering the handler
``acme_json_lines``. This module does what its reader does, in the page's order:

1. writes every ``file=PATH`` block into an empty project folder (blocks naming the
   same file are joined in document order) and checks the folder tree the page draws;
2. installs that package into a throw-away directory on this interpreter's path (and
   on the blocks' ``PYTHONPATH``), standing in for the page's no-run
   ``pip install -e '.[test]'``: never into the environment the tests run in;
3. runs the page's shell blocks in the project folder: ``pytest`` (the package's own
   tests, on the ``remsvc_server`` fixture of remsvc's pytest plugin),
   ``remsvc handlers``, ``remsvc run --handler acme_json_lines`` and
   ``python -m build``, then checks what ``twine upload`` (no-run) would publish;
4. runs the page's other python blocks (a session on a real server, handlers reading
   rows in place, a DAG using the name) in a fresh interpreter, and uses the handler
   by name in this process;
5. takes that directory off the path again, so no other test sees an extra handler.

Everything is offline: pip gets ``--no-index --no-deps --no-build-isolation``
(hatchling is in the env), and ``python -m build`` gets ``--no-isolation``, the one
rewrite of a block. Each run has its own directory, so runs at once never meet, and a
run killed half way leaves nothing behind in the environment.
"""

from __future__ import annotations

import dataclasses
import importlib.metadata as metadata
import json
import re
import subprocess
import sys
import tarfile
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from docs_blocks import SHELL_LANGS, Block, blocks, check_no_run, of_lang
from docs_site import Site
from packaging.requirements import Requirement

from remsvc_core import run_commands_sync
from remsvc_core.errors import HandlerError
from remsvc_core.handlers import list_handlers, refresh_handlers, resolve_handler

if sys.version_info >= (3, 11):
    import tomllib
else:  # pytest itself depends on tomli before Python 3.11
    import tomli as tomllib

DOC = "plugin-authors.md"
DIST = "acme-json-lines"
PACKAGE = "acme_json_lines"
HANDLER = "acme_json_lines"
VERSION = "0.1.0"
DESCRIPTION = "Parse each command's stdout as JSON Lines, one item per command."
PACKAGE_TESTS = "tests/test_handler.py"

# The shell blocks that run, by how they start; every other shell block is no-run.
PYTEST, HANDLERS, RUN, BUILD = "pytest", "remsvc handlers", "remsvc run", "python -m build"
SHELL_COMMANDS = (PYTEST, HANDLERS, RUN, BUILD)

PIP_TIMEOUT_S = 300.0


# -- the project the page builds ---------------------------------------------------


def project_files() -> dict[str, str]:
    """``{relative path: content}``: the ``file=`` blocks, parts of a file joined."""
    parts: dict[str, list[str]] = {}
    for block in blocks(DOC):
        if block.file is not None:
            parts.setdefault(block.file, []).append(block.text)
    assert parts, f"docs/{DOC} has no file= blocks"
    # Two blank lines between parts: each part ends in a newline, and Python wants
    # two blank lines before the def or class that starts the next one.
    return {path: "\n\n".join(texts) for path, texts in parts.items()}


def write_project(folder: Path) -> None:
    for relative, text in project_files().items():
        target = folder / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text, encoding="utf-8")


def pyproject() -> dict[str, Any]:
    return tomllib.loads(project_files()["pyproject.toml"])


def tree_listing(block: Block) -> tuple[str, set[str]]:
    """The root folder and the file paths a ``├──``-style tree block draws."""
    lines = block.text.splitlines()
    stack: list[str] = []
    files: set[str] = set()
    for line in lines[1:]:
        name = line.lstrip("│├└─ ")
        depth = (len(line) - len(name)) // 4 - 1
        stack = [*stack[:depth], name]
        if not name.endswith("/"):
            files.add("/".join(part.rstrip("/") for part in stack))
    return lines[0], files


def shell_block(command: str) -> Block:
    found = [
        block
        for block in of_lang(blocks(DOC), *SHELL_LANGS)
        if not block.has("no-run") and block.text.startswith(command)
    ]
    assert len(found) == 1, f"docs/{DOC}: expected one shell block running {command!r}"
    return found[0]


# -- installing and removing it ----------------------------------------------------


def installed_copy_is_current() -> bool:
    """The installed distribution has this page's version, entry points and modules."""
    try:
        dist = metadata.distribution(DIST)
    except metadata.PackageNotFoundError:
        return False
    project = pyproject()["project"]
    wanted_entry_points = project["entry-points"]["remsvc.handlers"]
    entry_points = {ep.name: ep.value for ep in dist.entry_points if ep.group == "remsvc.handlers"}
    if dist.version != project["version"] or entry_points != wanted_entry_points:
        return False
    for relative, text in project_files().items():
        if relative.startswith(f"src/{PACKAGE}/"):
            installed = Path(str(dist.locate_file(relative.removeprefix("src/"))))
            if not installed.is_file() or installed.read_text(encoding="utf-8") != text:
                return False
    return True


def pip(*args: str) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "pip", *args],
        capture_output=True,
        text=True,
        timeout=PIP_TIMEOUT_S,
        stdin=subprocess.DEVNULL,
    )
    assert done.returncode == 0, f"pip {' '.join(args)} failed\n{done.stdout}\n{done.stderr}"


def ensure_installed(project: Path, target: Path) -> bool:
    """Install ``project`` into ``target`` unless this exact package is found there;
    True if it installed."""
    if installed_copy_is_current():
        return False
    pip(
        "install",
        "--quiet",
        "--no-index",
        "--no-deps",
        "--no-build-isolation",
        "--upgrade",
        "--target",
        str(target),
        str(project),
    )
    refresh_handlers()
    return True


def target_of(site: Site) -> Path:
    return Path(site.env_extra["PYTHONPATH"])


@pytest.fixture(scope="module")
def guide(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    """The reader's machine: the page's project in ``site.work``, installed."""
    root = tmp_path_factory.mktemp("plugin-guide")
    target = root / "site-packages"
    site = Site(root, env_extra={"PYTHONPATH": str(target)})
    write_project(site.work)
    sys.path.insert(0, str(target))
    try:
        ensure_installed(site.work, target)
        yield site
    finally:
        sys.path.remove(str(target))
        for name in [m for m in sys.modules if m == PACKAGE or m.startswith(f"{PACKAGE}.")]:
            del sys.modules[name]
        refresh_handlers()


# -- the page's blocks ---------------------------------------------------------------


def test_every_block_is_run_or_checked() -> None:
    """A block is a project file, a python example, a shell block this module runs, a
    no-run install or upload, or the folder tree; nothing else slips through."""
    trees = 0
    for block in blocks(DOC):
        if block.file is not None:
            assert block.lang in ("python", "toml", "markdown"), block.where
        elif block.lang in SHELL_LANGS and block.has("no-run"):
            check_no_run(block)
        elif block.lang in SHELL_LANGS:
            assert block.text.strip().startswith(SHELL_COMMANDS), (
                f"{block.where}: a shell block no test runs"
            )
        elif block.lang == "text":
            trees += 1
        else:
            assert block.lang == "python", f"{block.where}: a {block.lang!r} block no test runs"
    assert trees == 1
    for command in SHELL_COMMANDS:
        shell_block(command)


def test_the_tree_shows_exactly_the_files_the_page_writes() -> None:
    (tree,) = of_lang(blocks(DOC), "text")
    root, files = tree_listing(tree)
    assert root == f"{DIST}/", tree.where
    assert files == set(project_files()), tree.where


def test_installing_is_idempotent_and_the_pin_fits_remsvc(guide: Site) -> None:
    assert installed_copy_is_current()
    assert not ensure_installed(guide.work, target_of(guide))  # a second time: nothing to do
    assert metadata.version(DIST) == VERSION
    for text in metadata.requires(DIST) or []:
        requirement = Requirement(text)
        if requirement.marker is None:  # not an extra: must hold where remsvc runs
            installed = metadata.version(requirement.name)
            assert requirement.specifier.contains(installed), (text, installed)


def test_the_packages_own_tests_pass(guide: Site) -> None:
    done = guide.run_shell(shell_block(PYTEST))
    count = len(re.findall(r"^def test_", project_files()[PACKAGE_TESTS], re.M))
    assert count >= 6
    summary = done.stdout.strip().splitlines()[-1]
    assert re.search(rf"\b{count} passed\b", summary), done.stdout
    assert not re.search(r"failed|error|skipped|xfail", summary), done.stdout


def test_remsvc_handlers_lists_the_name(guide: Site) -> None:
    done = guide.run_shell(shell_block(HANDLERS))
    (row,) = [line for line in done.stdout.splitlines() if line.split()[:1] == [HANDLER]]
    assert row.split()[1:3] == [DIST, VERSION]
    assert row.rstrip().endswith(DESCRIPTION)


def test_remsvc_run_selects_it_by_name(guide: Site) -> None:
    done = guide.run_shell(shell_block(RUN))
    document = json.loads(done.stdout)
    assert document["handlers"] == [HANDLER]
    assert document["ok"] is True
    assert document["value"] == [
        {
            "tid": 1,
            "cmd": """printf '{"disk": "/", "used": 41}\\n'""",
            "rc": 0,
            "records": [{"disk": "/", "used": 41}],
            "bad_lines": [],
        }
    ]


def test_build_makes_what_twine_would_upload(guide: Site) -> None:
    block = shell_block(BUILD)
    offline = block.text.replace(BUILD, f"{BUILD} --no-isolation", 1)
    guide.run_shell(dataclasses.replace(block, text=offline))
    files = project_files()
    dist = guide.work / "dist"
    wheel = dist / f"{PACKAGE}-{VERSION}-py3-none-any.whl"
    sdist = dist / f"{PACKAGE}-{VERSION}.tar.gz"
    assert set(dist.iterdir()) == {wheel, sdist}

    with zipfile.ZipFile(wheel) as archive:
        info = f"{PACKAGE}-{VERSION}.dist-info"
        entry_points = archive.read(f"{info}/entry_points.txt").decode()
        wheel_metadata = archive.read(f"{info}/METADATA").decode()
        module = archive.read(f"{PACKAGE}/handler.py").decode()
    assert f"[remsvc.handlers]\n{HANDLER} = {PACKAGE}.handler:json_lines" in entry_points
    assert "Requires-Dist: airflow-provider-remsvc>=1.1" in wheel_metadata
    assert files["README.md"].strip() in wheel_metadata  # the index's project page
    assert module == files[f"src/{PACKAGE}/handler.py"]

    with tarfile.open(sdist) as archive:
        names = set(archive.getnames())
    assert {f"{PACKAGE}-{VERSION}/{relative}" for relative in files} <= names


def test_the_python_examples_run(guide: Site) -> None:
    """The session on a real server, the handlers that read rows in place, and the
    DAG, whose operator resolves the name when the DAG is parsed (so it fails if the
    package were not installed)."""
    python = [block for block in of_lang(blocks(DOC), "python") if block.file is None]
    assert len(python) == 3
    done = guide.run_python(python)
    assert done.stdout.count("=== docs/") == len(python)


def test_the_handler_works_by_name_in_this_process(guide: Site, remsvc_server: Any) -> None:
    info = next(i for i in list_handlers() if i.name == HANDLER)
    assert (info.package, info.version, info.description) == (DIST, VERSION, DESCRIPTION)
    assert info.entry_point == f"{PACKAGE}.handler:json_lines"
    assert (info.builtin, info.active, info.error) == (False, True, None)

    commands = ["""printf '{"a": 1}\\n\\n{"b": 2}\\n'""", "echo oops"]
    raw = run_commands_sync(commands, remsvc_server.settings()).raw_results()
    strict = resolve_handler(HANDLER)
    lenient = resolve_handler({"name": HANDLER, "options": {"strict": False}})

    with pytest.raises(HandlerError, match=r"tid 2 .* pass strict=false"):
        strict.apply(raw)
    items = lenient.apply(json.loads(json.dumps(raw)))
    assert [(i["tid"], i["records"], i["bad_lines"]) for i in items] == [
        (1, [{"a": 1}, {"b": 2}], []),
        (2, [], [1]),
    ]
    assert len(strict.result_hooks()) == 1
    assert lenient.result_hooks() == []
    assert resolve_handler(f"{DIST}:{HANDLER}").names == [f"{DIST}:{HANDLER}"]
