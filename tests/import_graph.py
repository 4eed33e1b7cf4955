"""The project's own import graph, read from the source (every import, function-local ones too):
what the layering test and the dvc.yaml deps test check."""
from __future__ import annotations

import ast
from functools import lru_cache
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
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
