"""The fusion, tuned on the valid cases only: its weights by coordinate search over a grid
(NDCG@k), then the exposure offset of new products by bisection within a warm-cost budget."""
from __future__ import annotations

import logging
from typing import Sequence

import numpy as np

from components.core.batching import batch_slices
from components.core.config import FusionParams
from components.evaluation.metrics import apply_protocol, case_metrics, target_ranks
from components.models.fusion import FusionScorer, fuse, known_items, partly_known, zscore_rows
from components.models.scorer import Scorer

log = logging.getLogger(__name__)


def candidates_ndcg(scorers: Sequence[Scorer], candidates: Sequence[tuple[float, ...]],
                    histories: Sequence[Sequence[int]], targets: np.ndarray, cfg: FusionParams,
                    batch_size: int) -> np.ndarray:
    """Mean NDCG@k of every candidate weight vector, in one pass: each scorer runs once per batch."""
    active = [any(c[i] for c in candidates) for i in range(len(scorers))]
    known = [known_items(s) for s in scorers]
    totals = np.zeros(len(candidates))
    metric = f"ndcg@{cfg.metric_k}"
    for chunk in batch_slices(len(histories), batch_size):
        hist, tgt = histories[chunk], targets[chunk]
        normalised = [zscore_rows(s.score(hist)) if on else None for s, on in zip(scorers, active)]
        for c, weights in enumerate(candidates):
            fused = apply_protocol(fuse(normalised, weights, known), hist, tgt, cfg.protocol)
            totals[c] += case_metrics(target_ranks(fused, tgt), [cfg.metric_k])[metric].sum()
    return totals / len(histories)


def tune_fusion(scorers: Sequence[Scorer], histories: Sequence[Sequence[int]], targets: np.ndarray,
                target_is_cold: np.ndarray, cfg: FusionParams, batch_size: int) -> FusionScorer:
    """The weights (tune_weights), then new products' exposure (calibrate_cold_offset)."""
    weights = tune_weights(scorers, histories, targets, cfg, batch_size)
    offset = calibrate_cold_offset(scorers, weights, histories, targets, np.asarray(target_is_cold, bool), cfg,
                                   batch_size)
    return FusionScorer(scorers, weights, cold_offset=offset)


def tune_weights(scorers: Sequence[Scorer], histories: Sequence[Sequence[int]], targets: np.ndarray,
                 cfg: FusionParams, batch_size: int) -> tuple[float, ...]:
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
    return weights


def calibrate_cold_offset(scorers: Sequence[Scorer], weights: Sequence[float], histories: Sequence[Sequence[int]],
                          targets: np.ndarray, target_is_cold: np.ndarray, cfg: FusionParams,
                          batch_size: int) -> float:
    """The largest offset for new products (items some weighted scorer cannot score) whose
    warm-target valid NDCG@k stays within cfg.max_warm_drop of the fusion that never shows them
    (bisection over [-cold_offset_max, cold_offset_max]: warm NDCG only falls as the offset
    rises). Fusing z-scores weighs every case alike, and new products are few among the targets;
    this states the shop's trade-off instead: new products get as much exposure as the allowed
    cost to everyone else buys."""
    known = [known_items(s) for s in scorers]
    mask = partly_known(weights, known)
    if mask is None or not mask.any() or cfg.cold_offset_max == 0:
        return 0.0
    fused = []
    for chunk in batch_slices(len(histories), batch_size):
        hist, tgt = histories[chunk], targets[chunk]
        normalised = [zscore_rows(s.score(hist)) if w else None for s, w in zip(scorers, weights)]
        fused.append(apply_protocol(fuse(normalised, weights, known), hist, tgt, cfg.protocol))
    lift = mask.astype(np.float32)

    def ndcg(offset: float) -> np.ndarray:
        lifted = (np.where(mask, -np.inf, f) if offset == -np.inf else f + np.float32(offset) * lift for f in fused)
        ranks = [target_ranks(f, t) for f, t in zip(lifted, (targets[c] for c in batch_slices(len(histories), batch_size)))]
        return case_metrics(np.concatenate(ranks), [cfg.metric_k])[f"ndcg@{cfg.metric_k}"]

    warm = ~target_is_cold
    floor = (1 - cfg.max_warm_drop) * ndcg(-np.inf)[warm].mean()   # new products never shown
    low, high = -cfg.cold_offset_max, cfg.cold_offset_max
    for _ in range(cfg.bisection_steps):
        mid = (low + high) / 2
        low, high = (mid, high) if ndcg(mid)[warm].mean() >= floor else (low, mid)
    log.info("fusion: new products' offset %.3f -> valid warm-target NDCG@%d %.4f (floor %.4f)",
             low, cfg.metric_k, ndcg(low)[warm].mean(), floor)
    return low
