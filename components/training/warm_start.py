"""Warm start: a retraining on a new data version begins from the model selected on the one before.

The closed loop retrains when accepted feedback makes a new data version, a few hundred
interactions on top of the rest; from the last selected weights (train.model_file, left by the
run before) training reaches its best valid epoch in a few epochs instead of a dozen. The weights
carry over only when they learnt nothing the new split holds out, and only into the same model:
- the same architecture (every setting but the catalogue's size) and the same text encoder;
- the earlier training interactions, every one of them, and more: a data version grown by
  appended feedback. A shopper erased since (privacy.*) left rows the earlier model learnt from,
  and other data is not a retraining: both train afresh. So does a rerun on the same data, or a
  retried task, which gives the model a first run gives (and `dvc repro`, which removes a stage's
  outputs before it runs);
- no product the new split holds out (split.cold_item_fraction) was trained on: the hold-out is
  a hash of each item's id, so a grown catalogue keeps it; a changed split.seed does not.
A product new to the catalogue starts with a zero ID embedding: its text path alone, as a new
product is served, until training gives it its own.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from components.core.errors import InterestError
from components.models.checkpoint import load_checkpoint
from components.models.interest_model import InterestModel

log = logging.getLogger(__name__)
PER_ITEM = ("item_id.weight", "text", "known")   # rows by item_idx: mapped by item id, or the new split's own


@dataclass(frozen=True)
class WarmStart:
    state: dict[str, torch.Tensor] | None   # the new model's weights, or None: train from a fresh initialisation
    reason: str                              # why (logged, and in the training metrics)
    carried_items: int = 0                   # items whose ID embedding carried over


def training_rows(train: pd.DataFrame, item_index: pd.DataFrame) -> torch.Tensor:
    """The training interactions as sorted 64-bit hashes of (shopper, item id): the same rows
    give the same hashes whatever item_idx a grown catalogue gives each item (8 bytes a row,
    kept in the selected model's checkpoint)."""
    ids = item_index.set_index("item_idx")["item"]
    frame = pd.DataFrame({"user": train["user"].astype(str).to_numpy(), "item": ids.loc[train["item_idx"]].to_numpy()})
    return torch.from_numpy(np.unique(pd.util.hash_pandas_object(frame, index=False).to_numpy().view(np.int64)))


def warm_start(path: Path, model: InterestModel, item_index: pd.DataFrame, text_meta: dict | None,
               rows: torch.Tensor) -> WarmStart:
    """The checkpoint at path carried onto `model` (freshly initialised for this split's
    item_index, trained on `rows`), or why it cannot be."""
    if not path.is_file():
        return WarmStart(None, "no selected model from an earlier run")
    try:
        previous, info = load_checkpoint(path)
    except (InterestError, RuntimeError, TypeError, KeyError) as exc:   # a checkpoint of older code
        return WarmStart(None, f"the earlier model could not be read ({exc})")
    meta, before = info["meta"], info["train_rows"]
    shape = {k: v for k, v in model.cfg.to_dict().items() if k != "n_items"}
    if {k: v for k, v in previous.cfg.to_dict().items() if k != "n_items"} != shape:
        return WarmStart(None, "the earlier model has another architecture")
    if meta.get("text") != text_meta:
        return WarmStart(None, "the earlier model read other text embeddings (encoder or its weights)")
    if before is None:
        return WarmStart(None, "the earlier model keeps no record of its training interactions")
    missing = len(before) - int(np.isin(before.numpy(), rows.numpy(), assume_unique=True).sum())
    if missing:
        return WarmStart(None, f"{missing} of the earlier model's training interactions are not in this data "
                               "(a shopper erased since, or other data)")
    if len(before) == len(rows):
        return WarmStart(None, "the earlier model trained on the same interactions (a rerun trains afresh)")
    known_before = {item for item, known in zip(info["items"], previous.known[1:].tolist()) if known}
    held_out = set(item_index.loc[item_index["is_cold"].astype(bool), "item"])
    if known_before & held_out:
        return WarmStart(None, f"{len(known_before & held_out)} products the split holds out were trained on "
                               "(split.seed or split.cold_item_fraction changed)")
    state = model.state_dict()
    state.update({k: v for k, v in previous.state_dict().items() if k not in PER_ITEM})
    carried = 0
    if model.uses_id:
        row_before = {item: row for row, item in enumerate(info["items"], start=1)}
        pairs = [(idx, row_before[item]) for item, idx in zip(item_index["item"], item_index["item_idx"])
                 if item in row_before]
        weight = torch.zeros_like(state["item_id.weight"])
        if pairs:
            rows_now, rows_then = (torch.tensor(col) for col in zip(*pairs))
            weight[rows_now] = previous.item_id.weight.detach()[rows_then].to(weight.device)
        state["item_id.weight"], carried = weight, len(pairs)
    return WarmStart(state, f"from {path.name}: {carried} of {len(item_index)} items carried over", carried)
