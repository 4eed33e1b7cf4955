"""Reading a params file into the typed Params, and deriving a copy of it whose outputs land in
another folder (a sample, an experiment, another dataset) beside the project's own."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from components.core.config.overrides import apply_env_overrides, merge_overrides
from components.core.config.schema import Params
from components.core.errors import ConfigError

PARAMS_ENV = "INTEREST_PARAMS"

# project inputs a params copy elsewhere must still find; every other path is an output
INPUT_PATHS = (("data", "mirror_dir"), ("validate", "expectations_dir"), ("benchmark", "published_file"),
               ("benchmark", "peers", "python"), ("benchmark", "peers", "runner"))


def derive_params(source: Path, dest_dir: Path, overrides: dict[str, Any]) -> Path:
    """A copy of `source` in dest_dir whose outputs land under dest_dir: another dataset, a sample
    or an experiment runs beside the project's own outputs without touching them. Project inputs
    (mirror, expectation suites, published figures) are made absolute first."""
    source = Path(source).resolve()
    raw = yaml.safe_load(source.read_text(encoding="utf-8"))
    for *sections, key in INPUT_PATHS:
        node = raw
        for section in sections:
            node = node[section]
        value = Path(node[key])
        # normpath, not resolve(): a virtualenv's python is a symlink that must stay one
        node[key] = str(value if value.is_absolute() else os.path.normpath(source.parent / value))
    merge_overrides(raw, overrides)
    dest_dir.mkdir(parents=True, exist_ok=True)
    path = dest_dir / "params.yaml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False), encoding="utf-8")
    load_params(path, environ={})   # fail here, naming the key, not in a later step
    return path


def default_params_path() -> Path:
    return Path(os.environ.get(PARAMS_ENV, "params.yaml"))


def load_params(path: Path | str | None = None, environ: dict[str, str] | None = None) -> Params:
    """Load params.yaml (default: $INTEREST_PARAMS or ./params.yaml) with env overrides."""
    path = Path(path) if path is not None else default_params_path()
    if not path.is_file():
        raise ConfigError(
            f"no parameters file at {path.resolve()}: run from the project folder or set {PARAMS_ENV}"
        )
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path} is not valid YAML: {exc}") from exc
    raw = apply_env_overrides(raw, dict(os.environ if environ is None else environ))
    try:
        return Params(**raw, root=path.resolve().parent)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc'])}: {err['msg'].lower()}" for err in exc.errors()
        )
        raise ConfigError(f"{path}: {problems}") from exc
