"""Fusion: one Scorer from several, as a weighted sum of per-shopper z-scored scores.

Raw scores live on unrelated scales (counts, cosines, logits), so each scorer's row is z-scored
over the catalogue before weighting. The weights are tuned on the valid cases by the evaluation
(components.evaluation.fusion_tuning) and applied unchanged on test and in serving.
"""
from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np

from components.core.config.schema import BaselinesParams
from components.data.split import PAD
from components.models.baselines import BaselineFit, baseline_scorers
from components.models.interest_scorer import ModelScorer
from components.models.scorer_contract import Scorer


def zscore_rows(scores: np.ndarray) -> np.ndarray:
    """Per-row z-score over catalogue items; padding column 0 becomes 0.

    Non-finite scores (an item a scorer refuses) take the row's lowest finite z-score, so one
    scorer's -inf cannot veto an item the others rank high. A constant row contributes nothing.
    """
    items = np.asarray(scores, dtype=np.float32)[:, PAD + 1:]
    finite = np.isfinite(items)
    out = np.zeros(scores.shape, dtype=np.float32)
    if finite.all():                   # the usual case, in place: three passes instead of a dozen
        z = out[:, PAD + 1:]
        np.subtract(items, items.mean(axis=1, keepdims=True), out=z)
        std = np.sqrt(np.einsum("ij,ij->i", z, z) / z.shape[1])[:, None]
        np.divide(z, np.where(std > 0, std, np.float32(1.0)), out=z)
        return out
    values = np.where(finite, items, np.nan)
    mean, std = np.nanmean(values, axis=1, keepdims=True), np.nanstd(values, axis=1, keepdims=True)
    z = (values - mean) / np.where(std > 0, std, 1.0)
    floor = np.nan_to_num(np.nanmin(z, axis=1, keepdims=True), nan=0.0)
    out[:, PAD + 1:] = np.nan_to_num(np.where(finite, z, floor), nan=0.0)
    return out


def known_items(scorer: Scorer) -> np.ndarray | None:
    """[n_items + 1] bool: the items a scorer can score (None: every item). Popularity and
    item-kNN know the catalogue but new products (the split's hold-out, products added since:
    fused_scorers); their score for those is no evidence."""
    return getattr(scorer, "known", None)


def partly_known(weights: Sequence[float], known: Sequence[np.ndarray | None]) -> np.ndarray | None:
    """[n_items + 1] bool: items some weighted scorer cannot score (new products), or None."""
    masks = [k for w, k in zip(weights, known) if w and k is not None]
    return ~np.logical_and.reduce(masks) if masks else None


def fuse(normalised: Sequence[np.ndarray | None], weights: Sequence[float],
         known: Sequence[np.ndarray | None] | None = None, cold_offset: float = 0.0) -> np.ndarray:
    """Weighted sum of z-scored matrices (None where the weight is 0); padding at -inf.

    An item only some scorers can score (a new product) is fused over those
    scorers alone, rescaled to the full weight, so the others' silence is not a penalty, and gets
    cold_offset on top (its exposure, calibrated on valid). Items every weighted scorer knows get
    exactly the plain weighted sum."""
    known = list(known) if known is not None else [None] * len(weights)
    active = [(w, z, k) for w, z, k in zip(weights, normalised, known) if w]
    # each scorer's weight as a per-item column factor (its weight where it knows the item, 0
    # elsewhere, times the rescaling), so the sum is one multiply-add per scorer into one buffer
    scale = np.float32(1.0)
    partial = any(k is not None for _, _, k in active)
    if partial:
        coverage = sum(w * (1.0 if k is None else k) for w, _, k in active)
        scale = (sum(w for w, _, _ in active) / np.maximum(coverage, 1e-12)).astype(np.float32)
    total, term = np.empty_like(active[0][1]), None
    for i, (w, z, k) in enumerate(active):
        factor = (np.float32(w) * scale) if k is None else (np.float32(w) * k * scale).astype(np.float32)
        if i == 0:
            np.multiply(z, factor, out=total)
        else:
            term = np.multiply(z, factor, out=term)
            total += term
    if partial and cold_offset:
        total += np.float32(cold_offset) * partly_known(weights, known)
    total[:, PAD] = -np.inf
    return total


FUSION_NAME = "fusion"


class FusionScorer:
    """Weighted sum of z-scored scorers; scorers with weight 0 are not even called."""

    def __init__(self, scorers: Sequence[Scorer], weights: Sequence[float], name: str = FUSION_NAME,
                 cold_offset: float = 0.0):
        if len(scorers) != len(weights) or not any(weights):
            raise ValueError("fusion needs one weight per scorer and at least one non-zero weight")
        self.scorers, self.weights, self.name = tuple(scorers), tuple(float(w) for w in weights), name
        self.cold_offset = float(cold_offset)

    @classmethod
    def from_weights(cls, scorers: Sequence[Scorer], weight_by_name: Mapping[str, float],
                     name: str = FUSION_NAME, cold_offset: float = 0.0) -> "FusionScorer":
        """The fusion of `scorers`, in their order, with the weights recorded by name."""
        missing = [s.name for s in scorers if s.name not in weight_by_name]
        if missing or len(weight_by_name) != len(scorers):
            raise ValueError(f"fusion weights {sorted(weight_by_name)} do not match the scorers "
                             f"{[s.name for s in scorers]}")
        return cls(scorers, [weight_by_name[s.name] for s in scorers], name, cold_offset)

    @property
    def weight_by_name(self) -> dict[str, float]:
        return {s.name: w for s, w in zip(self.scorers, self.weights)}

    def score(self, histories: Sequence[Sequence[int]]) -> np.ndarray:
        return fuse([zscore_rows(s.score(histories)) if w else None
                     for s, w in zip(self.scorers, self.weights)], self.weights,
                    [known_items(s) for s in self.scorers], self.cold_offset)


def fused_scorers(fit: BaselineFit, embeddings: np.ndarray, cfg: BaselinesParams, model: ModelScorer) -> list[Scorer]:
    """What the served fusion combines, in its order: the baselines fitted on `fit`, then the model.
    The evaluation, the cold-start evaluation and the Recommender all build it here. The
    baselines know the items the model scores by a trained ID (the split's new products and
    products added since are the others), never "the items with interactions in the fit": that
    would make an item new because its interactions all fall among the held-out targets."""
    return [*baseline_scorers(fit, embeddings, cfg, model.id_items), model]
