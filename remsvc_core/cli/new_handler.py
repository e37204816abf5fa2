"""``remsvc new-handler NAME``: a handler package to start from, as docs/plugin-authors.md
describes it: pyproject with the entry point, the handler, a test against a real server
(the ``remsvc_server`` fixture of remsvc's pytest plugin), and a README."""

from __future__ import annotations

import argparse
import keyword
import re
from pathlib import Path
from typing import Any

from remsvc_core import __version__
from remsvc_core.cli import exit_codes
from remsvc_core.cli.exit_codes import UsageError

_NAME = re.compile(r"[a-z][a-z0-9_]{0,62}")


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "new-handler",
        help="create a result-handler package to start from",
        description="Create DIRECTORY/remsvc-NAME (NAME in snake_case): a package whose "
        "handler is registered as NAME in the remsvc.handlers entry-point group, with a "
        "test against a real server. `pip install -e './remsvc-NAME[test]'` and `pytest` "
        'in it run that test; result_handler="NAME" then works in every DAG.',
    )
    parser.add_argument("name", metavar="NAME", help="the handler's name, e.g. failures_only")
    parser.add_argument(
        "--directory", "-d", default=".", metavar="DIR", help="where to create it (default .)"
    )
    parser.set_defaults(func=execute)


def execute(args: argparse.Namespace) -> int:
    name = args.name
    if not _NAME.fullmatch(name) or keyword.iskeyword(name):
        raise UsageError(
            f"handler name {name!r} must be a Python identifier in snake_case "
            "(lower-case letters, digits, '_'), e.g. failures_only"
        )
    root = Path(args.directory) / f"remsvc-{name.replace('_', '-')}"
    if root.exists():
        raise UsageError(f"{root} already exists; remove it or pick another --directory")
    for relative, text in scaffold(name).items():
        path = root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    print(f"created {root}: pip install -e '{root}[test]' && pytest {root}")
    return exit_codes.OK


def scaffold(name: str) -> dict[str, str]:
    """The files of the package, by path relative to its root."""
    package = f"remsvc_{name}"
    distribution = f"remsvc-{name.replace('_', '-')}"
    minor = ".".join(__version__.split(".")[:2])
    return {
        "pyproject.toml": _PYPROJECT.format(
            name=name, package=package, distribution=distribution, minor=minor
        ),
        f"src/{package}/__init__.py": f'"""The {name} result handler for remsvc."""\n',
        f"src/{package}/handler.py": _HANDLER.format(name=name),
        f"tests/test_{name}.py": _TEST.format(name=name, package=package),
        "README.md": _README.format(name=name, distribution=distribution),
    }


_PYPROJECT = """\
[build-system]
requires = ["hatchling>=1.25"]
build-backend = "hatchling.build"

[project]
name = "{distribution}"
version = "0.1.0"
description = "The {name} result handler for remsvc"
readme = "README.md"
requires-python = ">=3.10"
dependencies = ["airflow-provider-remsvc>={minor}"]

[project.optional-dependencies]
test = ["pytest>=8"]

# The whole registration: once installed, result_handler="{name}" works in every DAG,
# and `remsvc run --handler {name}` on the command line.
[project.entry-points."remsvc.handlers"]
{name} = "{package}.handler:{name}"

[tool.hatch.build.targets.wheel]
packages = ["src/{package}"]

[tool.pytest.ini_options]
testpaths = ["tests"]
"""

_HANDLER = '''\
"""The {name} handler: receives every result and returns what is pushed to XCom."""

from __future__ import annotations

from typing import Any

from remsvc_core.handlers import result_list


def {name}(results: Any) -> list[dict[str, Any]]:
    """The results in command order (replace this with your shaping)."""
    return result_list(results)
'''

_TEST = '''\
"""{name} against a real remsvc server (the remsvc_server fixture comes with remsvc)."""

from __future__ import annotations

from typing import Any

from remsvc_core import resolve_handler, run_commands_sync

from {package}.handler import {name}


def test_{name}_shapes_real_results(remsvc_server: Any) -> None:
    outcome = run_commands_sync(["echo one", "exit 3"], remsvc_server.settings())

    shaped = resolve_handler({name}).apply(outcome)  # as a DAG or `remsvc run` calls it

    assert [row["tid"] for row in shaped] == [1, 2]
    assert [row["rc"] for row in shaped] == [0, 3]


def test_{name}_is_found_by_name() -> None:
    # Passes once the package is installed: the entry point is what DAGs use.
    assert resolve_handler("{name}").names == ["{name}"]
'''

_README = """\
# {distribution}

The `{name}` result handler for [remsvc](https://pypi.org/project/airflow-provider-remsvc/).

    pip install -e '.[test]'
    pytest

Once installed (on Airflow workers and triggerers too), use it by name:

    RemSvcOperator(task_id="t", commands=["uname -a"], result_handler="{name}")
    remsvc run --handler {name} "uname -a"

Edit `src/` to shape the results; `remsvc handlers` lists it.
"""
