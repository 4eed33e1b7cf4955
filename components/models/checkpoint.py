"""Checkpoint file <-> interest model: config, weights and the item index travel together, so a
checkpoint rebuilds its model alone (in the registry, the service or a DAG task)."""
from __future__ import annotations

from pathlib import Path

import pandas as pd
import torch

from components.core.config.schema import Params
from components.core.errors import InterestError
from components.core.io import write_torch
from components.models.interest_model import InterestModel, InterestModelConfig


def model_path(params: Params) -> Path:
    """The trained model selected on valid (train step)."""
    return params.path(params.train.model_file)


def final_model_path(params: Params) -> Path:
    """The trained model as tested and served (train step): the selected one after the final pass
    with the valid items (train.final_epochs)."""
    return params.path(params.train.final_model_file)


def cold_model_path(params: Params) -> Path:
    """The selected model with its fitted cold-start adapter (finetune_cold step): what the
    fusion is tuned with on valid."""
    return params.path(params.coldstart.model_file)


def final_cold_model_path(params: Params) -> Path:
    """The final model with the same cold-start adapter (finetune_cold step): the served one."""
    return params.path(params.coldstart.final_model_file)


def save_checkpoint(path: Path, model: InterestModel, item_index: pd.DataFrame, meta: dict,
                    train_rows: torch.Tensor | None = None) -> Path:
    """train_rows: what the model trained on (training/warm_start.py's hashes), for the model a
    retraining may start from."""
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    payload = {
        "config": model.cfg.to_dict(),
        "state_dict": state,
        "items": item_index.sort_values("item_idx")["item"].tolist(),
        "meta": meta,
        **({"train_rows": train_rows} if train_rows is not None else {}),
    }
    return write_torch(payload, path)


def load_checkpoint(path: Path, device: torch.device | None = None) -> tuple[InterestModel, dict]:
    """The model in eval mode on `device`, and {"items": item ids by item_idx - 1, "meta": ...,
    "train_rows": the training interactions' hashes, or None}."""
    if not Path(path).is_file():
        raise InterestError(f"no model checkpoint at {path}: run the pipeline up to the step that writes it "
                            "(`interest run --to train`, `interest run --to finetune_cold`, or `dvc repro`)")
    payload = torch.load(path, map_location="cpu", weights_only=True)
    cfg = InterestModelConfig(**payload["config"])
    state = payload["state_dict"]
    model = InterestModel(cfg, text_embeddings=state.get("text"), known_items=state["known"])
    model.load_state_dict(state)
    model.to(device or torch.device("cpu")).eval()
    return model, {"items": payload["items"], "meta": payload["meta"], "train_rows": payload.get("train_rows")}
