"""Imports flow one way: errors and paths, then the schema and the secrets, then the loader.

The schema, the secrets, the loader (``config``) and the app source once imported one
another, with imports inside functions to dodge the cycle. These tests read each module's
imports at any depth (an import inside a function counts) and load each module first in
a fresh interpreter.
"""

import ast
import os
import subprocess
import sys
from graphlib import TopologicalSorter
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = "orchestra_infra"

# The package's modules each of these may import: a graph without a cycle.
ALLOWED = {
    "errors": set(),
    "paths": set(),
    "catalog": set(),
    "schema": {"catalog", "errors"},
    "secrets_edit": {"errors"},
    "secrets": {"errors", "paths", "secrets_edit"},
    "app_source": {"errors", "schema"},
    "config": {"errors", "paths", "schema", "secrets", "secrets_edit"},
    # run on admin hosts with the standard library alone (templates/status/)
    "status_probe": set(),
    "status_rows": {"status_probe"},
}


def package_imports(module: str) -> set[str]:
    """The package's modules that ``module`` imports, wherever the import statement is."""
    tree = ast.parse((ROOT / PACKAGE / f"{module}.py").read_text())
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found |= {alias.name.split(".")[1] for alias in node.names
                      if alias.name.startswith(f"{PACKAGE}.")}
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # from .schema import validate, from . import schema
                base = node.module or ""
            elif node.module == PACKAGE or (node.module or "").startswith(f"{PACKAGE}."):
                base = node.module.partition(".")[2]
            else:
                continue
            if base:
                found.add(base.split(".")[0])
            else:
                found |= {alias.name for alias in node.names}
    return found


def closure(module: str) -> set[str]:
    seen, todo = set(), [module]
    while todo:
        name = todo.pop()
        if name not in seen:
            seen.add(name)
            todo.extend(ALLOWED[name])
    return seen


def test_the_allowed_imports_have_no_cycle():
    list(TopologicalSorter(ALLOWED).static_order())  # raises CycleError


def test_the_schema_imports_only_the_errors_and_the_catalogue():
    assert package_imports("schema") == {"catalog", "errors"}


@pytest.mark.parametrize("module", sorted(ALLOWED))
def test_each_module_imports_only_what_it_may(module):
    assert package_imports(module) - ALLOWED[module] == set()


@pytest.mark.parametrize("module", sorted(ALLOWED))
def test_each_module_loads_first_in_a_fresh_interpreter(module):
    program = (f"import sys, {PACKAGE}.{module}\n"
               f"print(*sorted(n for n in sys.modules if n.startswith('{PACKAGE}.')))")
    result = subprocess.run([sys.executable, "-c", program], capture_output=True, text=True,
                            check=True, cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)})
    loaded = {name.split(".", 1)[1] for name in result.stdout.split()}
    assert module in loaded
    assert loaded <= closure(module)
