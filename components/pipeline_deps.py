"""dvc.yaml's module deps, generated: each stage's deps list every project module its step runs
(its import closure), so an import added to a step cannot leave the stage stale while DVC says
all is up to date. `interest dvc-deps` rewrites them; `--check` names the stages that differ.

Only the module entries (`components/....py`) are generated; a stage's other deps (data,
folders, templated locations, with their comments) stay as written, after the modules.
"""
from __future__ import annotations

import re
from pathlib import Path

from components.core.import_graph import required_files
from components.core.paths import PROJECT_DIR
from components.pipeline import ANALYSES, STEPS

STAGE = re.compile(r"^  ([A-Za-z_][\w-]*):\s*(#.*)?$")
DEPS = re.compile(r"^    deps:\s*$")
ENTRY = re.compile(r"^      - (.*)$")
MODULE_ENTRY = re.compile(r"^      - components/\S+\.py\s*$")


def generated(text: str) -> str:
    """dvc.yaml's text with each step's module deps replaced by its import closure."""
    return _rewrite(text)[0]


def stale_stages(text: str) -> list[str]:
    """The stages whose module deps are not what their steps import."""
    return _rewrite(text)[1]


def _rewrite(text: str) -> tuple[str, list[str]]:
    """The generated text, and the stages whose module deps it changed."""
    modules = {step.name: required_files(step.module) for step in STEPS + ANALYSES}
    out: list[str] = []
    changed: list[str] = []
    stage, lines, i = None, text.splitlines(keepends=True), 0
    while i < len(lines):
        line = lines[i]
        if (match := STAGE.match(line)) is not None:
            stage = match.group(1)
        if DEPS.match(line) and stage in modules:
            out.append(line)
            i += 1
            block, others = [], []
            while i < len(lines) and (entry := ENTRY.match(lines[i])):
                block.append(lines[i])
                if not MODULE_ENTRY.match(lines[i]) and not _covered_folder(entry.group(1), modules[stage]):
                    others.append(lines[i])
                i += 1
            fresh = [f"      - {path}\n" for path in modules[stage]] + others
            if fresh != block:
                changed.append(stage)
            out += fresh
            continue
        out.append(line)
        i += 1
    return "".join(out), changed


def _covered_folder(entry: str, files: list[str]) -> bool:
    """A package folder named as a dep whose every file is a module the stage lists anyway."""
    folder = PROJECT_DIR / entry.split("#")[0].strip().rstrip("/")
    if not entry.startswith("components/") or not folder.is_dir():
        return False
    inside = [f for f in folder.rglob("*") if f.is_file() and "__pycache__" not in f.parts]
    return all(str(f.relative_to(PROJECT_DIR)) in files for f in inside)


def write_dvc_deps(path: Path) -> list[str]:
    """Rewrite the file's module deps; the stages that changed."""
    fresh, changed = _rewrite(path.read_text(encoding="utf-8"))
    if changed:
        path.write_text(fresh, encoding="utf-8")
    return changed
