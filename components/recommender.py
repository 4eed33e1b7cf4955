"""Trained interest model as a Scorer: checkpoint file <-> model, histories -> catalogue scores.

The checkpoint holds the model config, weights and the item index, so it rebuilds the model on
its own (in the service, the registry, or a DAG task) without the training code's state.
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd
import torch

from components.config import Params
from components.device import select_device
from components.errors import InterestError
from components.model import InterestModel, SeqRecConfig

log = logging.getLogger(__name__)

MODEL_SCORER_NAME = "interest_model"  # the trained model's name in evaluation results
COLD_MODEL_SCORER_NAME = "interest_model_cold"  # the same after cold-start fine-tuning (the served one)


def left_pad(histories: Sequence[Sequence[int]], length: int) -> torch.Tensor:
    """Last `length` items of each history, right-aligned, 0-padded on the left: [B, length]."""
    out = torch.zeros((len(histories), length), dtype=torch.long)
    for row, hist in enumerate(histories):
        tail = list(hist)[-length:]
        if tail:
            out[row, length - len(tail):] = torch.as_tensor(tail, dtype=torch.long)
    return out


def save_checkpoint(path: Path, model: InterestModel, item_index: pd.DataFrame, meta: dict) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    payload = {
        "config": model.cfg.to_dict(),
        "state_dict": state,
        "items": item_index.sort_values("item_idx")["item"].tolist(),
        "meta": meta,
    }
    tmp = path.with_suffix(path.suffix + ".tmp")
    torch.save(payload, tmp)
    tmp.replace(path)
    return path


def load_checkpoint(path: Path, device: torch.device | None = None) -> tuple[InterestModel, dict]:
    if not Path(path).is_file():
        raise InterestError(f"no trained model at {path}: run `interest train` (or `dvc repro train`) first")
    payload = torch.load(path, map_location="cpu", weights_only=True)
    cfg = SeqRecConfig(**payload["config"])
    state = payload["state_dict"]
    model = InterestModel(cfg, text_embeddings=state.get("text"), known_items=state["known"])
    model.load_state_dict(state)
    model.to(device or torch.device("cpu")).eval()
    return model, {"items": payload["items"], "meta": payload["meta"]}


class ModelScorer:
    """Scorer over the trained model; item representations are computed once per instance."""

    def __init__(self, model: InterestModel, name: str = MODEL_SCORER_NAME, batch_size: int = 512):
        self.model = model.eval()
        self.name = name
        self.batch_size = batch_size
        self.device = next(model.parameters()).device
        with torch.inference_mode():
            self.items = model.item_representations()

    def score(self, histories: Sequence[Sequence[int]]) -> np.ndarray:
        out = []
        for start in range(0, len(histories), self.batch_size):
            batch = histories[start:start + self.batch_size]
            width = max(1, min(self.model.cfg.max_len, max((len(h) for h in batch), default=1)))
            seqs = left_pad(batch, width).to(self.device)
            out.append(self.model.score_last(seqs, self.items).float().cpu().numpy())
        return np.concatenate(out) if out else np.zeros((0, self.model.cfg.n_items + 1), np.float32)


def model_path(params: Params) -> Path:
    return params.path(params.train.model_file)


def load_model_scorer(params: Params, path: Path | None = None, name: str = MODEL_SCORER_NAME) -> ModelScorer:
    model, _ = load_checkpoint(path or model_path(params), select_device(params.train.device))
    return ModelScorer(model, name=name, batch_size=params.train.eval_batch_size)
