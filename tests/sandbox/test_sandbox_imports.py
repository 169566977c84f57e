"""The sandbox keeps its own ServiceNow rules: no sandbox module imports the product it stands in front of."""

from __future__ import annotations

import ast
from pathlib import Path

SANDBOX = Path(__file__).resolve().parents[2] / "sandbox"
# The product's packages and top-level modules (the lead's layout adds config/).
PRODUCT = {"servicenow", "workflows", "activities", "starter", "config", "settings", "worker", "logs", "ops", "bench"}


def imported_modules(source: str) -> set[str]:
    """Every module an import statement names, anywhere in the file (also inside functions and TYPE_CHECKING)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
    return found


def test_the_walker_sees_every_import_form() -> None:
    source = "import servicenow.states\nfrom workflows import x\ndef f():\n    from starter.cli import y\n"
    assert {m.split(".")[0] for m in imported_modules(source)} == {"servicenow", "workflows", "starter"}


def test_no_sandbox_module_imports_the_product() -> None:
    modules = sorted(SANDBOX.rglob("*.py"))
    assert len(modules) > 20  # the walk really covers the package
    offenders = {
        f"{path.relative_to(SANDBOX.parent)}: {module}"
        for path in modules
        for module in imported_modules(path.read_text())
        if module.split(".")[0] in PRODUCT
    }
    assert offenders == set()
