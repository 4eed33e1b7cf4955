"""The BentoML model store as the model registry.

The trained model with its cold-start adapter (warm items rank exactly as the trained model's) is saved with its evaluation metrics, the params that made it and the data
version (DVC hash of the split) as metadata, labelled `stage=candidate`, so a later step can
compare it with the model labelled `stage=production` and the service can load either by tag.
"""
from __future__ import annotations

import hashlib
import logging
import os
import shutil
from pathlib import Path

import torch
import yaml

from components.coldstart import cold_model_path
from components.config import Params
from components.errors import InterestError
from components.io import read_json, write_json
from components.recommender import (
    MODEL_SCORER_NAME,
    ModelScorer,
    load_checkpoint,
)

log = logging.getLogger(__name__)

CHECKPOINT_NAME = "checkpoint.pt"


def _bentoml(params: Params):
    """Import bentoml with its store where params.yaml says (BENTOML_HOME from the env wins)."""
    os.environ.setdefault("BENTOML_HOME", str(params.path(params.registry.home)))
    import bentoml
    return bentoml


def data_version(params: Params) -> dict[str, str | None]:
    """DVC's hash of the split output (from dvc.lock) and a content hash of the split files."""
    h = hashlib.sha256()
    split_dir = params.path(params.split.out_dir)
    for f in sorted(split_dir.glob("*.parquet")):
        h.update(f.name.encode())
        h.update(f.read_bytes())
    lock = params.root / "dvc.lock"
    dvc_md5 = None
    if lock.is_file():
        stage = (yaml.safe_load(lock.read_text()) or {}).get("stages", {}).get("split", {})
        dvc_md5 = next((o.get("md5") for o in stage.get("outs", []) if o.get("path") == str(params.split.out_dir)), None)
    return {"dvc_md5": dvc_md5, "sha256": h.hexdigest()[:16]}


def _without_none(obj):
    """BentoML metadata takes basic types only: an absent value (e.g. no dvc.lock outside DVC,
    as under Airflow) is left out rather than stored as None."""
    if isinstance(obj, dict):
        return {k: _without_none(v) for k, v in obj.items() if v is not None}
    if isinstance(obj, list):
        return [_without_none(v) for v in obj if v is not None]
    return obj


def register_model(params: Params) -> dict:
    """Save the trained checkpoint to the model store; returns the tag and what was recorded."""
    bentoml = _bentoml(params)
    checkpoint = cold_model_path(params)  # the trained model plus its cold-start adapter
    if not checkpoint.is_file():
        raise InterestError(f"no model at {checkpoint}: run `interest train` and `interest finetune-cold` first")
    metrics_file = params.path(params.evaluate.metrics_file)
    metrics = read_json(metrics_file) if metrics_file.is_file() else {}
    headline = metrics.get("unmasked", {}).get("test", {}).get(MODEL_SCORER_NAME, {})
    metadata = {
        "test_metrics": headline,
        "train": read_json(params.path(params.train.metrics_file)),
        "cold_adapter": read_json(params.path(params.coldstart.adapter_metrics_file)),
        "params": {"model": params.model.model_dump(), "train": params.train.model_dump(mode="json")},
        "data_version": data_version(params),
        "dataset": params.data.dataset,
    }
    labels = {"stage": "candidate", "mode": params.model.mode.replace("+", "_"), "dataset": params.data.dataset}
    with bentoml.models.create(name=params.registry.model_name, labels=labels,
                               metadata=_without_none(metadata)) as ref:
        shutil.copy(checkpoint, Path(ref.path) / CHECKPOINT_NAME)
    record = {"tag": str(ref.tag), "labels": labels, "data_version": metadata["data_version"],
              "test_ndcg@10": headline.get("ndcg@10")}
    write_json(record, params.path(params.registry.record_file))
    log.info("registered %s (%s)", ref.tag, labels)
    return record


def load_registered_scorer(params: Params, tag: str | None = None,
                           device: torch.device | None = None) -> tuple[ModelScorer, dict]:
    """Scorer and metadata of a model in the store (default: the latest of registry.model_name)."""
    bentoml = _bentoml(params)
    tag = tag or f"{params.registry.model_name}:latest"
    try:
        stored = bentoml.models.get(tag)
    except bentoml.exceptions.NotFound as exc:
        raise InterestError(f"model {tag} is not in the model store at {os.environ['BENTOML_HOME']}: "
                            "run `interest register` first") from exc
    model, _ = load_checkpoint(Path(stored.path) / CHECKPOINT_NAME, device)
    return ModelScorer(model, batch_size=params.train.eval_batch_size), {"tag": str(stored.tag), **stored.info.metadata}
