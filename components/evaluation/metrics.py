"""Full-ranking accuracy and beyond-accuracy metrics over a score matrix.

Every catalogue item competes with the target (no sampled negatives: sampling inflates the
figures and can even reorder models, Krichene & Rendle, KDD 2020). Ties count against the
target, so a scorer that cannot tell items apart earns nothing for them. Column 0 is the
padding item and never competes. All functions are pure: inputs are never modified.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
import torch

from components.data.split import PAD

PROTOCOLS = ("unmasked", "masked")
# the figures quoted first everywhere: the published papers' protocol, on the test cases
HEADLINE_PROTOCOL, HEADLINE_SUBSET = "unmasked", "test"


def _flat_history(histories: Sequence[Sequence[int]]) -> tuple[np.ndarray, np.ndarray]:
    """(row, item) pairs of every history entry, for vectorised scatter into a score matrix."""
    lengths = np.fromiter((len(h) for h in histories), dtype=np.int64, count=len(histories))
    rows = np.repeat(np.arange(len(histories)), lengths)
    items = np.fromiter((i for h in histories for i in h), dtype=np.int64, count=int(lengths.sum()))
    return rows, items


def mask_history(scores: np.ndarray, histories: Sequence[Sequence[int]], targets: np.ndarray) -> np.ndarray:
    """Copy of scores with each row's history items at -inf.

    The target itself is never masked: when a shopper buys an item again, hiding it would make
    the case unwinnable instead of measuring whether the model predicts the repeat.
    """
    masked = np.array(scores, dtype=np.float32, copy=True)
    rows, items = _flat_history(histories)
    keep = items != np.asarray(targets)[rows]
    masked[rows[keep], items[keep]] = -np.inf
    return masked


def masked_target_ranks(scores: np.ndarray, ranks: np.ndarray, histories: Sequence[Sequence[int]],
                        targets: np.ndarray) -> np.ndarray:
    """The ranks under the masked protocol from the unmasked ones (ranks = target_ranks(scores,
    targets)): less each row's distinct history items, not the target, that score at least as
    high as it. The same as ranking mask_history(scores, ...), without copying the matrix."""
    targets = np.asarray(targets)
    rows, items = _flat_history(histories)
    keep = items != targets[rows]
    pairs = np.unique(rows[keep] * scores.shape[1] + items[keep])    # an item counts once
    rows, items = pairs // scores.shape[1], pairs % scores.shape[1]
    ahead = scores[rows, items] >= scores[rows, targets[rows]]
    return ranks - np.bincount(rows[ahead], minlength=len(scores))


def target_ranks(scores: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """0-based rank of each row's target among items 1..n: strictly higher items + tied others."""
    items = scores[:, PAD + 1:]
    target_scores = scores[np.arange(len(scores)), targets][:, None]
    at_least_as_high = (items >= target_scores).sum(axis=1)  # includes the target itself
    return (at_least_as_high - 1).astype(np.int64)


def case_metrics(ranks: np.ndarray, ks: Sequence[int]) -> dict[str, np.ndarray]:
    """Per-case Recall@k (= HR@k for one target), NDCG@k and the untruncated reciprocal rank."""
    ranks = np.asarray(ranks, dtype=np.float64)
    out: dict[str, np.ndarray] = {}
    for k in ks:
        hit = ranks < k
        out[f"recall@{k}"] = hit.astype(np.float64)
        out[f"ndcg@{k}"] = np.where(hit, 1.0 / np.log2(ranks + 2.0), 0.0)
    out["mrr"] = 1.0 / (ranks + 1.0)
    return out


def ranking_summary(ranks: np.ndarray, ks: Sequence[int]) -> dict[str, float]:
    """Mean of each per-case metric over a non-empty set of cases."""
    return {name: float(values.mean()) for name, values in case_metrics(ranks, ks).items()}


def apply_protocol(scores: np.ndarray, histories: Sequence[Sequence[int]], targets: np.ndarray,
                   protocol: str) -> np.ndarray:
    """Scores as ranked under a protocol: `unmasked` (SASRec/S3-Rec papers) or `masked` history."""
    if protocol == "unmasked":
        return scores
    if protocol == "masked":
        return mask_history(scores, histories, targets)
    raise ValueError(f"unknown protocol '{protocol}'; expected one of {PROTOCOLS}")


def top_k_items(scores: np.ndarray, k: int) -> np.ndarray:
    """[B, k] item indices of each row's k best-scored catalogue items, best first, padding excluded."""
    items = torch.from_numpy(np.ascontiguousarray(scores[:, PAD + 1:], dtype=np.float32))
    best = torch.topk(items, min(k, items.shape[1]), dim=1, sorted=True).indices
    return best.numpy().astype(np.int64) + PAD + 1


def catalogue_coverage(top_items: np.ndarray, n_items: int) -> float:
    """Share of the catalogue that appears in at least one shopper's top-k list."""
    return float(np.unique(top_items).size / n_items)


def item_self_information(train_counts: np.ndarray, pseudocount: float) -> np.ndarray:
    """-log2 of each item's share of training interactions (index = item_idx).

    The pseudocount keeps never-seen (cold) items finite instead of infinitely novel.
    """
    counts = np.asarray(train_counts, dtype=np.float64)[PAD + 1:] + pseudocount
    info = np.zeros(len(train_counts), dtype=np.float64)
    info[PAD + 1:] = -np.log2(counts / counts.sum())
    return info


def novelty(top_items: np.ndarray, self_information: np.ndarray) -> float:
    """Mean self-information of the recommended items: higher = less mainstream lists."""
    return float(self_information[top_items].mean())
