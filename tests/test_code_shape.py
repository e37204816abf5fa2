"""The shape the packages keep: no import cycles, no reaching into another package's
private modules, and no module over 400 lines without saying why at its top.

Read from the source with ``ast`` (nothing is imported). Only imports that run when a
module is imported count: those inside functions (deliberately lazy) and under
``if TYPE_CHECKING:`` do not.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("remsvc_core", "remsvc_handlers", "remsvc_provider")
MAX_LINES = 400
LONG_MODULE_REASON = "over 400 lines"


def _modules() -> dict[str, Path]:
    found = {}
    for package in PACKAGES:
        for path in (ROOT / package).rglob("*.py"):
            if "_proto" in path.parts:
                continue  # generated stubs
            parts = path.relative_to(ROOT).with_suffix("").parts
            name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
            found[name] = path
    return found


MODULES = _modules()


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _import_time_statements(body: list[ast.stmt]) -> list[ast.stmt]:
    """Statements run at import: the module body, descending into try/if/with blocks
    but not into functions, classes' methods or TYPE_CHECKING blocks."""
    out: list[ast.stmt] = []
    for node in body:
        out.append(node)
        if isinstance(node, ast.If) and not _is_type_checking(node.test):
            out += _import_time_statements(node.body) + _import_time_statements(node.orelse)
        elif isinstance(node, ast.Try):
            for block in (node.body, node.orelse, node.finalbody):
                out += _import_time_statements(block)
            for handler in node.handlers:
                out += _import_time_statements(handler.body)
        elif isinstance(node, ast.ClassDef):
            out += [
                n
                for n in _import_time_statements(node.body)
                if isinstance(n, ast.Import | ast.ImportFrom)
            ]
    return out


def _imports(name: str, path: Path) -> set[str]:
    """Our modules that ``name`` imports when it is imported."""
    tree = ast.parse(path.read_text(), str(path))
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    targets: set[str] = set()
    for node in _import_time_statements(tree.body):
        if isinstance(node, ast.Import):
            targets.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            targets.add(module)
            targets.update(f"{module}.{alias.name}" for alias in node.names)
    return {target for target in targets if target in MODULES and target != name}


GRAPH = {name: _imports(name, path) for name, path in MODULES.items()}


def test_there_is_no_import_cycle() -> None:
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles: list[list[str]] = []

    def visit(node: str) -> None:  # Tarjan's strongly connected components
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in sorted(GRAPH[node]):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            # A package importing its own submodule (its __init__ re-exporting) is not
            # a cycle of jobs; a cycle among modules is.
            if len(component) > 1:
                cycles.append(sorted(component))

    for node in sorted(GRAPH):
        if node not in index:
            visit(node)
    assert not cycles, f"import cycles among package modules: {cycles}"


def _private_owner(module: str) -> str | None:
    """The package a private module belongs to (``a.b._c`` -> ``a.b``), else None."""
    parts = module.split(".")
    for position, part in enumerate(parts):
        if part.startswith("_") and not part.startswith("__"):
            return ".".join(parts[:position])
    return None


def test_no_module_imports_another_packages_private_module() -> None:
    offences = []
    for name, targets in GRAPH.items():
        path = MODULES[name]
        own_package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        for target in targets:
            owner = _private_owner(target)
            if owner is None:
                continue
            if own_package != owner and not own_package.startswith(owner + "."):
                offences.append(f"{name} imports {target}")
    assert not offences, "; ".join(sorted(offences))


@pytest.mark.parametrize("name", sorted(MODULES))
def test_long_modules_say_why_at_their_top(name: str) -> None:
    path = MODULES[name]
    source = path.read_text()
    lines = source.count("\n")
    if lines <= MAX_LINES:
        return
    docstring = ast.get_docstring(ast.parse(source)) or ""
    assert LONG_MODULE_REASON in docstring, (
        f"{path.relative_to(ROOT)} has {lines} lines; split it by job, or say at its top "
        f"why it is {LONG_MODULE_REASON} (a docstring sentence containing that phrase)"
    )
