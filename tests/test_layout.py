"""The house rules of docs/architecture.md, checked on the import statements themselves (ast, no import executed).

- no import cycle between product modules;
- nothing outside `starter` imports `starter` (it is the entry layer: shim, CLI, dev stack);
- nothing the product runs imports `sandbox` (only the dev stack, `starter/devstack/`, starts it);
- `config` and `servicenow` stand on their own (they import no other product package);
- no workflow module reaches httpx, boto3 or subprocess, directly or through any product module it imports
  (inside `imports_passed_through` blocks too: a passed-through module still runs in the worker process).
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("config", "servicenow", "workflows", "activities", "starter", "ops")
MODULES = ("worker",)
FORBIDDEN_IN_WORKFLOWS = ("httpx", "boto3", "botocore", "subprocess", "asyncio.subprocess")


@dataclass
class Module:
    name: str
    path: Path
    top_level: set[str] = field(default_factory=set)  # imported when the module is imported
    anywhere: set[str] = field(default_factory=set)  # also imports inside functions (lazy)


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _product_files() -> Iterator[Path]:
    for package in PACKAGES:
        yield from sorted((ROOT / package).rglob("*.py"))
    for module in MODULES:
        yield ROOT / f"{module}.py"


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _targets(node: ast.Import | ast.ImportFrom, known: set[str]) -> set[str]:
    """What an import statement loads: `from a import b` loads `a.b` when that is a module, else `a`."""
    if isinstance(node, ast.Import):
        return {alias.name for alias in node.names}
    base = node.module or ""
    loaded = {base}
    for alias in node.names:
        if f"{base}.{alias.name}" in known:
            loaded.add(f"{base}.{alias.name}")
    return loaded


def _walk(body: list[ast.stmt], known: set[str], module: Module, top: bool) -> None:
    for node in body:
        if isinstance(node, ast.Import | ast.ImportFrom):
            targets = _targets(node, known)
            module.anywhere |= targets
            if top:
                module.top_level |= targets
        elif isinstance(node, ast.If) and _is_type_checking(node):
            continue  # annotations only: never executed
        elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            _walk(node.body, known, module, top=False)
        elif isinstance(node, ast.ClassDef):
            _walk(node.body, known, module, top)
        else:
            for child in ast.iter_child_nodes(node):
                if isinstance(child, ast.stmt):
                    _walk([child], known, module, top)
            for attr in ("body", "orelse", "finalbody", "handlers"):
                block = getattr(node, attr, None)
                if isinstance(block, list):
                    _walk([s for s in block if isinstance(s, ast.stmt)], known, module, top)
                    for handler in block:
                        if isinstance(handler, ast.ExceptHandler):
                            _walk(handler.body, known, module, top)


def _graph() -> dict[str, Module]:
    files = list(_product_files())
    known = {_module_name(path) for path in files}
    modules = {}
    for path in files:
        module = Module(_module_name(path), path)
        _walk(ast.parse(path.read_text(), str(path)).body, known, module, top=True)
        modules[module.name] = module
    return modules


GRAPH = _graph()


def _parents(name: str) -> list[str]:
    """Importing `a.b.c` runs `a` and `a.b` first."""
    parts = name.split(".")
    return [".".join(parts[:i]) for i in range(1, len(parts))]


def _loads(name: str) -> set[str]:
    """Product modules that importing `name` executes directly (its own top-level imports and their parents)."""
    found = set()
    for target in GRAPH[name].top_level:
        for candidate in (*_parents(target), target):
            if candidate in GRAPH and candidate != name:
                found.add(candidate)
    return found


def _package(name: str) -> str:
    return name.split(".")[0]


def test_the_walk_sees_the_product() -> None:
    # A walk that found nothing would pass every rule below.
    assert {"workflows.change.workflow", "activities.catalog", "starter.shim.app", "worker"} <= set(GRAPH)
    assert "workflows.calls" in GRAPH["workflows.change.workflow"].top_level


def test_no_import_cycle() -> None:
    visiting: list[str] = []
    done: set[str] = set()
    cycles: list[list[str]] = []

    def visit(name: str) -> None:
        if name in done:
            return
        if name in visiting:
            cycles.append([*visiting[visiting.index(name) :], name])
            return
        visiting.append(name)
        for target in sorted(_loads(name)):
            visit(target)
        visiting.pop()
        done.add(name)

    for name in sorted(GRAPH):
        visit(name)
    assert not cycles, "import cycles:\n" + "\n".join(" -> ".join(cycle) for cycle in cycles)


def test_nothing_outside_starter_imports_starter() -> None:
    offenders = [
        f"{name} imports {target}"
        for name, module in GRAPH.items()
        if _package(name) != "starter"
        for target in module.anywhere
        if _package(target) == "starter"
    ]
    assert not offenders, offenders


def test_nothing_the_product_runs_imports_the_sandbox() -> None:
    offenders = [
        f"{name} imports {target}"
        for name, module in GRAPH.items()
        if not name.startswith("starter.devstack")
        for target in module.anywhere
        if _package(target) in ("sandbox", "bench", "tests")
    ]
    assert not offenders, offenders


@pytest.mark.parametrize("package", ["config", "servicenow"])
def test_the_lowest_layers_import_no_other_product_package(package: str) -> None:
    offenders = [
        f"{name} imports {target}"
        for name, module in GRAPH.items()
        if _package(name) == package
        for target in module.anywhere
        if _package(target) in (*PACKAGES, *MODULES) and _package(target) != package
    ]
    assert not offenders, offenders


def _reach(name: str) -> dict[str, list[str]]:
    """Every module (product or not) that importing `name` executes, with the product path that gets there."""
    paths: dict[str, list[str]] = {}
    stack = [(name, [name])]
    while stack:
        current, path = stack.pop()
        for target in GRAPH[current].top_level:
            for candidate in (*_parents(target), target):
                if candidate in paths:
                    continue
                paths[candidate] = [*path, candidate]
                if candidate in GRAPH:
                    stack.append((candidate, paths[candidate]))
    return paths


WORKFLOW_MODULES = sorted(
    name
    for name, module in GRAPH.items()
    if _package(name) == "workflows" and "@workflow.defn" in module.path.read_text()
)


def test_every_workflow_definition_is_walked() -> None:
    assert len(WORKFLOW_MODULES) >= 8, WORKFLOW_MODULES


@pytest.mark.parametrize("name", WORKFLOW_MODULES)
def test_no_workflow_module_reaches_io_libraries(name: str) -> None:
    reached = _reach(name)
    offenders = [
        " -> ".join(path)
        for target, path in sorted(reached.items())
        if any(target == bad or target.startswith(f"{bad}.") for bad in FORBIDDEN_IN_WORKFLOWS)
    ]
    assert not offenders, offenders
