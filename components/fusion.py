"""Fusion: one Scorer from several, as a weighted sum of per-shopper z-scored scores.

Raw scores live on unrelated scales (counts, cosines, logits), so each scorer's row is z-scored
over the catalogue before weighting. Weights are tuned on the VALID cases only (coordinate
search over a grid, NDCG@k), then applied unchanged on test.
"""
from __future__ import annotations

import logging
from typing import Sequence

import numpy as np

from components.config import FusionParams
from components.metrics import apply_protocol, case_metrics, target_ranks
from components.scorer import Scorer
from components.split import PAD

log = logging.getLogger(__name__)


def zscore_rows(scores: np.ndarray) -> np.ndarray:
    """Per-row z-score over catalogue items; padding column 0 becomes 0.

    Non-finite scores (an item a scorer refuses) take the row's lowest finite z-score, so one
    scorer's -inf cannot veto an item the others rank high. A constant row contributes nothing.
    """
    items = np.asarray(scores, dtype=np.float32)[:, PAD + 1:]
    finite = np.isfinite(items)
    all_finite = bool(finite.all())
    values = items if all_finite else np.where(finite, items, np.nan)
    mean_fn, std_fn = (np.mean, np.std) if all_finite else (np.nanmean, np.nanstd)
    mean, std = mean_fn(values, axis=1, keepdims=True), std_fn(values, axis=1, keepdims=True)
    z = (values - mean) / np.where(std > 0, std, 1.0)
    if not all_finite:
        floor = np.nan_to_num(np.nanmin(z, axis=1, keepdims=True), nan=0.0)
        z = np.nan_to_num(np.where(finite, z, floor), nan=0.0)
    out = np.zeros(scores.shape, dtype=np.float32)
    out[:, PAD + 1:] = z
    return out


def fuse(normalised: Sequence[np.ndarray | None], weights: Sequence[float]) -> np.ndarray:
    """Weighted sum of z-scored matrices (None where the weight is 0); padding at -inf."""
    total = sum(w * z for w, z in zip(weights, normalised) if w)
    total[:, PAD] = -np.inf
    return total


class FusionScorer:
    """Weighted sum of z-scored scorers; scorers with weight 0 are not even called."""

    def __init__(self, scorers: Sequence[Scorer], weights: Sequence[float], name: str = "fusion"):
        if len(scorers) != len(weights) or not any(weights):
            raise ValueError("fusion needs one weight per scorer and at least one non-zero weight")
        self.scorers, self.weights, self.name = tuple(scorers), tuple(float(w) for w in weights), name

    @property
    def weight_by_name(self) -> dict[str, float]:
        return {s.name: w for s, w in zip(self.scorers, self.weights)}

    def score(self, histories: Sequence[Sequence[int]]) -> np.ndarray:
        return fuse([zscore_rows(s.score(histories)) if w else None
                     for s, w in zip(self.scorers, self.weights)], self.weights)


def candidates_ndcg(scorers: Sequence[Scorer], candidates: Sequence[tuple[float, ...]],
                    histories: Sequence[Sequence[int]], targets: np.ndarray, cfg: FusionParams,
                    batch_size: int) -> np.ndarray:
    """Mean NDCG@k of every candidate weight vector, in one pass: each scorer runs once per batch."""
    active = [any(c[i] for c in candidates) for i in range(len(scorers))]
    totals = np.zeros(len(candidates))
    metric = f"ndcg@{cfg.metric_k}"
    for start in range(0, len(histories), batch_size):
        hist, tgt = histories[start:start + batch_size], targets[start:start + batch_size]
        normalised = [zscore_rows(s.score(hist)) if on else None for s, on in zip(scorers, active)]
        for c, weights in enumerate(candidates):
            fused = apply_protocol(fuse(normalised, weights), hist, tgt, cfg.protocol)
            totals[c] += case_metrics(target_ranks(fused, tgt), [cfg.metric_k])[metric].sum()
    return totals / len(histories)


def tune_fusion(scorers: Sequence[Scorer], histories: Sequence[Sequence[int]], targets: np.ndarray,
                cfg: FusionParams, batch_size: int) -> FusionScorer:
    """Coordinate search on valid NDCG@k, starting from the best single scorer.

    Only strict improvements are taken, so the result is never worse on valid than the best
    single scorer (the one-hot start), whatever the grid.
    """
    targets = np.asarray(targets)
    n = len(scorers)
    singles = [tuple(float(i == j) for i in range(n)) for j in range(n)]
    single_scores = candidates_ndcg(scorers, singles, histories, targets, cfg, batch_size)
    best = int(np.argmax(single_scores))
    weights, best_score = singles[best], float(single_scores[best])
    log.info("fusion: best single scorer on valid is %s (NDCG@%d %.4f)", scorers[best].name, cfg.metric_k, best_score)
    for sweep in range(cfg.rounds):
        improved = False
        for i in range(n):
            candidates = list(dict.fromkeys(
                weights[:i] + (g,) + weights[i + 1:] for g in cfg.weight_grid if g != weights[i]))
            candidates = [c for c in candidates if any(c)]
            if not candidates:
                continue
            scores = candidates_ndcg(scorers, candidates, histories, targets, cfg, batch_size)
            j = int(np.argmax(scores))
            if scores[j] > best_score:
                weights, best_score, improved = candidates[j], float(scores[j]), True
        log.info("fusion sweep %d: weights %s, valid NDCG@%d %.4f", sweep + 1,
                 dict(zip((s.name for s in scorers), weights)), cfg.metric_k, best_score)
        if not improved:
            break
    return FusionScorer(scorers, weights)
