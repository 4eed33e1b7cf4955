"""The fusion, tuned on the valid cases only: its weights by coordinate search over a grid
(NDCG@k), then the exposure offset of new products by bisection, to the share of the lists the
scorers that can rank them give them."""
from __future__ import annotations

import logging
from typing import Iterator, Sequence

import numpy as np

from components.core.batch_slices import batch_slices
from components.core.config.schema import FusionParams
from components.evaluation.metrics import apply_protocol, case_metrics, target_ranks, top_k_items
from components.models.fusion import FusionScorer, fuse, known_items, partly_known, zscore_rows
from components.models.scorer_contract import Scorer

log = logging.getLogger(__name__)


class ValidScores:
    """Each scorer's z-scored scores of the valid cases, batch by batch. The search reads them
    once per candidate set (a dozen times): they are computed once and kept while all of them
    fit in cache_gb, else computed again on every read (the same figures either way)."""

    def __init__(self, scorers: Sequence[Scorer], histories: Sequence[Sequence[int]], batch_size: int,
                 cache_gb: float):
        self.scorers, self.histories = list(scorers), list(histories)
        self.chunks = list(batch_slices(len(self.histories), batch_size))
        self.known = [known_items(s) for s in self.scorers]
        self._max_bytes, self._kept = cache_gb * 2**30, {}

    def get(self, batch: int, scorer: int) -> np.ndarray:
        if (batch, scorer) in self._kept:
            return self._kept[batch, scorer]
        z = zscore_rows(self.scorers[scorer].score(self.histories[self.chunks[batch]]))
        if z.nbytes / len(z) * len(self.histories) * len(self.scorers) <= self._max_bytes:
            self._kept[batch, scorer] = z
        return z

    def batches(self, weights: Sequence[float]) -> Iterator[tuple[list[Sequence[int]], list[np.ndarray | None]]]:
        """(histories, z-scored scores of the scorers with a non-zero weight, else None) per batch."""
        for b, chunk in enumerate(self.chunks):
            yield self.histories[chunk], [self.get(b, i) if w else None for i, w in enumerate(weights)]


def candidates_ndcg(valid: ValidScores, candidates: Sequence[tuple[float, ...]], targets: np.ndarray,
                    cfg: FusionParams) -> np.ndarray:
    """Mean NDCG@k of every candidate weight vector, in one pass over the batches."""
    active = [float(any(c[i] for c in candidates)) for i in range(len(valid.scorers))]
    totals = np.zeros(len(candidates))
    metric = f"ndcg@{cfg.metric_k}"
    for (hist, normalised), chunk in zip(valid.batches(active), valid.chunks):
        tgt = targets[chunk]
        for c, weights in enumerate(candidates):
            fused = apply_protocol(fuse(normalised, weights, valid.known), hist, tgt, cfg.protocol)
            totals[c] += case_metrics(target_ranks(fused, tgt), [cfg.metric_k])[metric].sum()
    return totals / len(valid.histories)


def tune_fusion(scorers: Sequence[Scorer], histories: Sequence[Sequence[int]], targets: np.ndarray,
                cfg: FusionParams, batch_size: int) -> FusionScorer:
    """The weights (tune_weights), then new products' exposure (calibrate_cold_offset)."""
    valid, targets = ValidScores(scorers, histories, batch_size, cfg.cache_gb), np.asarray(targets)
    weights = tune_weights(valid, targets, cfg)
    offset = calibrate_cold_offset(valid, weights, targets, cfg)
    return FusionScorer(scorers, weights, cold_offset=offset)


def tune_weights(valid: ValidScores, targets: np.ndarray, cfg: FusionParams) -> tuple[float, ...]:
    """Coordinate search on valid NDCG@k, starting from the best single scorer.

    Only strict improvements are taken, so the result is never worse on valid than the best
    single scorer (the one-hot start), whatever the grid.
    """
    scorers = valid.scorers
    n = len(scorers)
    singles = [tuple(float(i == j) for i in range(n)) for j in range(n)]
    single_scores = candidates_ndcg(valid, singles, targets, cfg)
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
            scores = candidates_ndcg(valid, candidates, targets, cfg)
            j = int(np.argmax(scores))
            if scores[j] > best_score:
                weights, best_score, improved = candidates[j], float(scores[j]), True
        log.info("fusion sweep %d: weights %s, valid NDCG@%d %.4f", sweep + 1,
                 dict(zip((s.name for s in scorers), weights)), cfg.metric_k, best_score)
        if not improved:
            break
    return weights


def calibrate_cold_offset(valid: ValidScores, weights: Sequence[float], targets: np.ndarray,
                          cfg: FusionParams) -> float:
    """The offset for new products (items some weighted scorer cannot score) at which they take as
    many places in the fused top-k lists of the valid cases as the weighted scorers that can rank
    them give them by themselves (bisection over [-cold_offset_max, cold_offset_max]: their share
    only grows with the offset). Valid has no new-product targets, so what showing them is worth
    cannot be measured there, only what it costs; the served model's own exposure was calibrated
    where it can be (cold-start fine-tuning, on held-out items, within its warm-cost budget), and
    the fusion keeps it instead of letting scorers blind to new products crowd them out."""
    mask = partly_known(weights, valid.known)
    seeing = tuple(w if k is None else 0.0 for w, k in zip(weights, valid.known))
    if mask is None or not mask.any() or not any(seeing) or cfg.cold_offset_max == 0:
        return 0.0
    k, lift = cfg.metric_k, mask.astype(np.float32)

    def fused(use: Sequence[float]) -> list[np.ndarray]:
        return [apply_protocol(fuse(normalised, use, valid.known), hist, targets[chunk], cfg.protocol)
                for (hist, normalised), chunk in zip(valid.batches(use), valid.chunks)]

    def share(scores: list[np.ndarray], offset: float = 0.0) -> float:
        """New products' share of the top-k places."""
        shown = [mask[top_k_items(f + np.float32(offset) * lift, k)].mean(1) for f in scores]
        return float(np.concatenate(shown).mean())

    reference, scores = share(fused(seeing)), fused(weights)
    low, high = -cfg.cold_offset_max, cfg.cold_offset_max
    for _ in range(cfg.bisection_steps):
        mid = (low + high) / 2
        low, high = (low, mid) if share(scores, mid) >= reference else (mid, high)
    log.info("fusion: new products' offset %.3f -> %.2f%% of the valid top-%d places (%.2f%% by the scorers "
             "that rank them)", high, 100 * share(scores, high), k, 100 * reference)
    return high
