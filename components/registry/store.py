"""The BentoML model store as the model registry.

`register` stores the bundle of the pipeline's current outputs (components.registry.bundle) as a
new version of registry.model_name, labelled `stage=candidate`, with the served recommender's own
evaluation figures, the params that made it and the data version as metadata. The store folder is
passed to BentoML explicitly (registry.home, or $BENTOML_HOME when set), never through the
process environment, so two stores can be used side by side in one process.
"""
from __future__ import annotations

import hashlib
import logging
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

from components.core.config.schema import Params
from components.core.errors import InterestError
from components.core.io import read_json, write_json
from components.models.interest_scorer import COLD_MODEL_SCORER_NAME
from components.registry.bundle import SERVED, Bundle, headline, write_bundle

log = logging.getLogger(__name__)

HOME_ENV = "BENTOML_HOME"


def store_home(params: Params) -> Path:
    """$BENTOML_HOME when set (BentoML's own convention), else registry.home."""
    return Path(os.environ.get(HOME_ENV) or params.path(params.registry.home))


def model_store(params: Params):
    # BentoML's public functions take the store as `_model_store`; its class is internal
    from bentoml._internal.models import ModelStore

    return ModelStore(store_home(params) / "models")


def without_none(obj):
    """BentoML metadata takes basic types only: an absent value (e.g. no dvc.lock outside DVC,
    as under Airflow) is left out rather than stored as None."""
    if isinstance(obj, dict):
        return {k: without_none(v) for k, v in obj.items() if v is not None}
    if isinstance(obj, list):
        return [without_none(v) for v in obj if v is not None]
    return obj


def bundle_digest(folder: Path) -> str:
    """sha256 over a bundle's files (names and bytes): the same inputs give the same bundle."""
    digest = hashlib.sha256()
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        digest.update(path.relative_to(folder).as_posix().encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()


def stored_versions(params: Params) -> list:
    """Every stored version of registry.model_name (none yet: an empty list)."""
    from bentoml.exceptions import NotFound

    try:
        return model_store(params).list(params.registry.model_name)
    except NotFound:
        return []


def register(params: Params) -> dict[str, Any]:
    """Store the bundle as a candidate version; returns the tag and what was recorded. A bundle
    already stored (same digest: a retried task, a rerun on the same inputs) is not stored twice."""
    import bentoml

    labels = {"stage": "candidate", "served": SERVED, "dataset": params.data.dataset}
    with tempfile.TemporaryDirectory(prefix="bundle-") as tmp:
        manifest = write_bundle(params, Path(tmp))
        digest = bundle_digest(Path(tmp))
        same = [m for m in stored_versions(params) if m.info.metadata.get("bundle_sha256") == digest]
        if same:
            log.info("this bundle is stored already, as %s: not registered again", same[0].tag)
            return _record(params, str(same[0].tag), dict(same[0].info.labels), manifest)
        metadata = without_none({
            "bundle_sha256": digest,
            "test_metrics": headline(manifest),                       # the served recommender's
            "model_test_metrics": headline(manifest, COLD_MODEL_SCORER_NAME),
            "fusion_weights": manifest["fusion_weights"],
            "fusion_cold_offset": manifest["fusion_cold_offset"],
            "train": read_json(params.path(params.train.metrics_file)),
            "cold_adapter": read_json(params.path(params.coldstart.adapter_metrics_file)),
            "params": {"model": params.model.settings(), "train": params.train.settings()},
            "data_version": manifest["data_version"],
            "dataset": params.data.dataset,
        })
        with bentoml.models.create(params.registry.model_name, labels=labels, metadata=metadata,
                                   _model_store=model_store(params)) as ref:
            shutil.copytree(tmp, ref.path, dirs_exist_ok=True)
    log.info("registered %s (%s): served %s, test NDCG@10 %.4f", ref.tag, labels, SERVED, headline(manifest)["ndcg@10"])
    return _record(params, str(ref.tag), labels, manifest)


def _record(params: Params, tag: str, labels: dict, manifest: dict) -> dict[str, Any]:
    """registry.record_file: the version the last register stored (or found stored)."""
    record = {"tag": tag, "labels": labels, "data_version": manifest["data_version"],
              "test_ndcg@10": headline(manifest)["ndcg@10"]}
    write_json(record, params.path(params.registry.record_file))
    return record


def registered(params: Params, tag: str | None = None) -> tuple[Bundle, dict[str, Any]]:
    """The bundle of a stored version (default: the latest of registry.model_name) and its metadata."""
    from bentoml.exceptions import NotFound

    tag = tag or f"{params.registry.model_name}:latest"
    try:
        stored = model_store(params).get(tag)
    except NotFound as exc:
        raise InterestError(f"model {tag} is not in the model store at {store_home(params)}: "
                            "run `interest register` (or `dvc repro`) first, or pass --bundle DIR") from exc
    return Bundle.open(Path(stored.path)), {"tag": str(stored.tag), **stored.info.metadata}


def run(params: Params) -> dict[str, Any]:
    """Pipeline step `register`."""
    return register(params)
