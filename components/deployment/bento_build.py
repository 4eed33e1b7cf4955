"""`interest build-bento`: the deployable bento (bentoml build of bento/bentofile.yaml) for the
version in production, labelled with its model tag. A bento for that tag already in the store is
reused, so a retried task builds nothing twice."""
from __future__ import annotations

import logging
import os
import subprocess
from pathlib import Path
from typing import Any

import yaml

from components.core.config.schema import Params
from components.core.errors import InterestError
from components.core.io import write_json
from components.registry.promotion import production_tag
from components.registry.store import store_home
from components.core.paths import BIN, PROJECT_DIR

log = logging.getLogger(__name__)
BENTO_NAME = "interest"   # bento/service.py: @bentoml.service(name=...)
TAG_LABEL = "model_tag"
BUILD_TIMEOUT_SECONDS = 1800


def bento_for(home: Path, model_tag: str) -> str | None:
    """The tag of a stored bento built for model_tag, if any."""
    folder = home / "bentos" / BENTO_NAME
    for bento_yaml in sorted(folder.glob("*/bento.yaml")) if folder.is_dir() else []:
        info = yaml.safe_load(bento_yaml.read_text())
        if (info.get("labels") or {}).get(TAG_LABEL) == model_tag:
            return f"{BENTO_NAME}:{info['version']}"
    return None


def build_bento(params: Params) -> dict[str, Any]:
    model_tag = production_tag(params)
    if model_tag is None:
        raise InterestError("no version is in production: run `interest gate` (or `interest promote TAG`) first")
    home = store_home(params)
    built = False
    if (tag := bento_for(home, model_tag)) is None:
        env = {**os.environ, "BENTOML_HOME": str(home), "BENTOML_DO_NOT_TRACK": "True"}
        done = subprocess.run([str(BIN / "bentoml"), "build", "-f", "bento/bentofile.yaml", "--label",
                               f"{TAG_LABEL}={model_tag}", "."], cwd=PROJECT_DIR, env=env, capture_output=True,
                              text=True, timeout=BUILD_TIMEOUT_SECONDS)
        if done.returncode != 0:
            raise InterestError(f"bentoml build failed:\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}")
        tag, built = bento_for(home, model_tag), True
        if tag is None:
            raise InterestError(f"bentoml build succeeded but no bento labelled {TAG_LABEL}={model_tag} is in {home}")
    record = {"bento": tag, "model_tag": model_tag, "built_now": built, "store": str(home)}
    write_json(record, params.path(params.gate.bento_record_file))
    log.info("bento %s serves %s (%s)", tag, model_tag, "built now" if built else "built before")
    return record


def run(params: Params) -> dict[str, Any]:
    record = build_bento(params)
    return {"outputs": {"bento_record": str(params.path(params.gate.bento_record_file))}, **record}
