"""dvc.yaml read as the tests compare it with the step list: stages, their deps and params."""
from __future__ import annotations

import re
import typing
from pathlib import Path

import yaml

from components.core.config.reads import Section
from components.core.config.schema import Params
from components.core.import_graph import ROOT, required_files


def stages() -> dict[str, dict]:
    return yaml.safe_load((ROOT / "dvc.yaml").read_text(encoding="utf-8"))["stages"]


def missing_deps(stage: dict, module: str) -> list[str]:
    """Files the step runs that the stage's deps (files or folders) do not cover."""
    deps = [str(d).rstrip("/") for d in stage.get("deps", [])]
    return sorted(f for f in required_files(module)
                  if not any(f == d or f.startswith(d + "/") for d in deps))


def file_location_keys(model: type[Section] = Params, prefix: str = "") -> set[str]:
    """Dotted keys whose value is a file or folder: a stage names those as deps and outs."""
    keys = set()
    for name, field in model.model_fields.items():
        key = f"{prefix}{field.alias or name}"
        if isinstance(field.annotation, type) and issubclass(field.annotation, Section):
            keys |= file_location_keys(field.annotation, key + ".")
        elif field.annotation is Path or Path in typing.get_args(field.annotation):
            keys.add(key)
    return keys


# file locations outside DVC's view: the model store, the download cache, products added at run time,
# the monitoring windows of served feedback (feedback_report scores their review texts)
UNTRACKED_LOCATIONS = {"registry.home", "data.download.dir", "serving.added_items_dir", "monitor.out_dir"}


def _paths(entries: list) -> list[str]:
    """dvc.yaml path entries (strings or {path: options}) as plain relative paths."""
    out = []
    for entry in entries or []:
        for path in (entry if isinstance(entry, dict) else [entry]):
            out.append(str(path).rstrip("/"))
    return out


def _value(params: Params, key: str):
    section, *rest = key.split(".")
    value = getattr(params, "validation" if section == "validate" else section)
    for name in rest:
        value = getattr(value, name)
    return value


def unlisted_locations(stage: dict, reads: list[str], params: Params) -> list[str]:
    """File-location keys the step read whose path the stage names as neither dep nor output
    (dvc.yaml's ${section.key} templates resolved from params)."""
    listed = {re.sub(r"\$\{([a-z_.]+)\}", lambda m: str(_value(params, m.group(1))), p)
              for key in ("deps", "outs", "metrics", "plots") for p in _paths(stage.get(key, []))}
    problems = []
    for key in sorted(set(reads) & file_location_keys() - UNTRACKED_LOCATIONS):
        value = _value(params, key)
        if str(value).rstrip("/") not in listed:
            problems.append(f"{key} ({value})")
    return problems


def uncovered_reads(stage: dict, reads: list[str]) -> list[str]:
    """Keys the step read that the stage's params (keys or whole sections) do not list."""
    listed = [str(p) for p in stage.get("params", [])]
    locations = file_location_keys()
    return sorted(k for k in reads if k not in locations
                  and not any(k == p or k.startswith(p + ".") for p in listed))
