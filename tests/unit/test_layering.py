"""components/ imports point down only: each subpackage may import its own modules and the
layers below it, never a layer above or beside it. Read from the source, every import counted."""
from __future__ import annotations

import ast

from components.core.import_graph import PACKAGE, all_modules, imports_of, module_file

# lowest first; packages on one line are peers and may not import each other
LAYERS: tuple[tuple[str, ...], ...] = (
    ("core",),
    ("data",),
    ("features",),
    ("models",),
    ("evaluation",),
    ("training",),
    ("registry",),
    ("feedback",),
    ("serving",),
    ("monitoring", "analysis", "privacy", "deployment"),
    ("pipeline",),
    ("pipeline_deps",),
    ("benches",),
    ("cli",),
)
LEVEL = {name: level for level, names in enumerate(LAYERS) for name in names}


def top(module: str) -> str:
    """components.models.fusion -> models"""
    return module.split(".")[1]


def violations(modules: list[str]) -> list[str]:
    found = []
    for module in modules:
        if module == PACKAGE:
            continue
        for imported in imports_of(module):
            if imported == PACKAGE:
                continue
            a, b = top(module), top(imported)
            if a != b and LEVEL[b] >= LEVEL[a]:
                found.append(f"{module} imports {imported}: {b} is not below {a}")
    return sorted(found)


def test_every_subpackage_has_a_layer():
    assert {top(m) for m in all_modules() if m != PACKAGE} <= set(LEVEL)


def test_imports_only_point_down():
    assert violations(all_modules()) == []


def test_an_upward_import_is_reported(monkeypatch):
    """The check itself can fail: core importing serving is named."""
    real = imports_of.__wrapped__

    def with_upward(module: str) -> frozenset[str]:
        extra = {"components.serving.recommender"} if module == "components.core.io" else set()
        return real(module) | extra
    monkeypatch.setattr("tests.unit.test_layering.imports_of", with_upward)
    assert violations(["components.core.io"]) == [
        "components.core.io imports components.serving.recommender: serving is not below core"]


def test_package_inits_hold_only_a_docstring():
    """So importing a subpackage runs no code (and dvc.yaml need not list them as deps)."""
    for module in all_modules():
        path = module_file(module)
        if path.name == "__init__.py":
            body = ast.parse(path.read_text(encoding="utf-8")).body
            assert len(body) <= 1 and all(isinstance(n, ast.Expr) and isinstance(n.value, ast.Constant)
                                          for n in body), path
