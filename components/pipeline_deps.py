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
    modules = {step.name: required_files(step.module) for step in STEPS + ANALYSES}
    out: list[str] = []
    stage, lines, i = None, text.splitlines(keepends=True), 0
    while i < len(lines):
        line = lines[i]
        if (match := STAGE.match(line)) is not None:
            stage = match.group(1)
        if DEPS.match(line) and stage in modules:
            out.append(line)
            i += 1
            others = []
            while i < len(lines) and (entry := ENTRY.match(lines[i])):
                if not MODULE_ENTRY.match(lines[i]) and not _covered_folder(entry.group(1), modules[stage]):
                    others.append(lines[i])
                i += 1
            out += [f"      - {path}\n" for path in modules[stage]] + others
            continue
        out.append(line)
        i += 1
    return "".join(out)


def _covered_folder(entry: str, files: list[str]) -> bool:
    """A package folder named as a dep whose every file is a module the stage lists anyway."""
    folder = PROJECT_DIR / entry.split("#")[0].strip().rstrip("/")
    if not entry.startswith("components/") or not folder.is_dir():
        return False
    inside = [f for f in folder.rglob("*") if f.is_file() and "__pycache__" not in f.parts]
    return all(str(f.relative_to(PROJECT_DIR)) in files for f in inside)


def stale_stages(text: str) -> list[str]:
    """The stages whose module deps are not what their steps import."""
    fresh = generated(text)
    if fresh == text:
        return []
    return [step.name for step in STEPS + ANALYSES if _deps_of(text, step.name) != _deps_of(fresh, step.name)]


def _deps_of(text: str, stage: str) -> list[str]:
    block = re.search(rf"^  {re.escape(stage)}:[^\n]*\n(.*?)(?=^  \S|\Z)", text, re.M | re.S)
    return re.findall(r"^      - (components/\S+\.py)", block.group(1), re.M) if block else []


def write_dvc_deps(path: Path) -> list[str]:
    """Rewrite the file's module deps; the stages that changed."""
    text = path.read_text(encoding="utf-8")
    changed = stale_stages(text)
    if changed:
        path.write_text(generated(text), encoding="utf-8")
    return changed
