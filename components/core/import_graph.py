"""The project's own import graph, read from the source (every import, function-local ones too):
what dvc.yaml's module deps are made from (`interest dvc-deps`) and the layering test checks."""
from __future__ import annotations

import ast
from functools import lru_cache
from pathlib import Path

from components.core.paths import PROJECT_DIR as ROOT

PACKAGE = "components"


def module_file(module: str) -> Path:
    base = ROOT.joinpath(*module.split("."))
    return base / "__init__.py" if base.is_dir() else base.with_suffix(".py")


def all_modules() -> list[str]:
    return sorted(".".join(p.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")
                  for p in (ROOT / PACKAGE).rglob("*.py"))


@lru_cache(maxsize=None)
def imports_of(module: str) -> frozenset[str]:
    """The project modules `module` imports (a `from package import name` counts the submodule
    when `name` is one, else the package)."""
    found = set()
    for node in ast.walk(ast.parse(module_file(module).read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.split(".")[0] == PACKAGE)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and (node.module or "").split(".")[0] == PACKAGE:
            for alias in node.names:
                sub = f"{node.module}.{alias.name}"
                found.add(sub if module_file(sub).is_file() else node.module)
    return frozenset(found - {module})


def closure(module: str) -> set[str]:
    """`module` and every project module it imports, directly or not (packages' __init__ included)."""
    seen, todo = set(), [module]
    while todo:
        m = todo.pop()
        if m in seen:
            continue
        seen.add(m)
        parts = m.split(".")
        todo.extend(".".join(parts[:i]) for i in range(1, len(parts)))   # importing a.b.c runs a/ and a/b/
        todo.extend(imports_of(m))
    return seen


def required_files(module: str) -> list[str]:
    """Repository paths of every module `module` runs, sorted (package __init__ files hold only
    docstrings, checked by the layering test, so they are left out)."""
    return sorted(str(module_file(m).relative_to(ROOT)) for m in closure(module)
                  if module_file(m).name != "__init__.py")
