"""Reference recommenders fit from the split: popularity, item-kNN and text similarity.

They are the floor every learned model has to clear on the same protocol, and inputs the
fusion scorer can combine. Each honours the Scorer contract (components.models.scorer_contract). What
they learn from interactions (BaselineFit) is kept apart from the scorers built on it, so the
registry can store it and the service rebuild the very scorers the evaluation ranked with.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Sequence

import numpy as np
import scipy.sparse as sp
import torch

from components.core.config.schema import BaselinesParams
from components.data.split import PAD, Split
from components.features.text_profile import recency_text_profile
from components.models.interest_model import left_pad
from components.models.scorer_contract import Scorer

log = logging.getLogger(__name__)


def train_counts(split: Split) -> np.ndarray:
    """Training interactions per item_idx, length n_items + 1 (index 0 = padding, always 0)."""
    return np.bincount(split.train["item_idx"].to_numpy(), minlength=len(split.item_index) + 1)


def recency_weights(length: int, decay: float) -> np.ndarray:
    """decay**i for the i-th most recent of `length` items, oldest first: recent items count more."""
    return decay ** np.arange(length - 1, -1, -1, dtype=np.float64)


def history_matrix(histories: Sequence[Sequence[int]], n_columns: int, decay: float) -> sp.csr_matrix:
    """[B, n_columns] sparse recency weights of each history (a repeated item sums its weights)."""
    rows = np.repeat(np.arange(len(histories)), [len(h) for h in histories])
    cols = np.fromiter((i for h in histories for i in h), dtype=np.int64, count=len(rows))
    weights = np.concatenate([recency_weights(len(h), decay) for h in histories]) if len(rows) else np.zeros(0)
    return sp.csr_matrix((weights, (rows, cols)), shape=(len(histories), n_columns))


def _with_padding_excluded(scores: np.ndarray) -> np.ndarray:
    scores = np.asarray(scores, dtype=np.float32)
    scores[:, PAD] = -np.inf
    return scores


class PopularityScorer:
    """Same list for everyone: items by training interaction count."""

    name = "popularity"

    def __init__(self, counts: np.ndarray, known: np.ndarray | None = None):
        self._row = _with_padding_excluded(np.asarray(counts, dtype=np.float32)[None, :])
        self.known = known    # items it can score, when the caller says (fusion: see models.fusion.fuse)

    def score(self, histories: Sequence[Sequence[int]]) -> np.ndarray:
        return np.repeat(self._row, len(histories), axis=0)


def cooccurrence_cosine(split: Split, neighbours: int) -> sp.csr_matrix:
    """Item-item cosine of co-occurrence over shoppers' training histories, top-`neighbours` per row.

    cos(i, j) = |users with i and j| / sqrt(|users with i| * |users with j|); an item is not its
    own neighbour. Pruning keeps the matrix sparse and drops weak, noisy co-occurrences.
    """
    n_columns = len(split.item_index) + 1
    users = split.train["user"].astype("category").cat.codes.to_numpy()
    items = split.train["item_idx"].to_numpy()
    presence = sp.csr_matrix((np.ones(len(items), dtype=np.float32), (items, users)),
                             shape=(n_columns, int(users.max()) + 1 if len(users) else 0))
    presence.data[:] = 1.0  # duplicates summed by the constructor count once
    co = (presence @ presence.T).tocsr()
    norms = np.sqrt(co.diagonal())
    co.setdiag(0.0)
    co.eliminate_zeros()
    co = co.tocoo()
    sim = co.data / (norms[co.row] * norms[co.col])
    return _top_per_row(sp.csr_matrix((sim, (co.row, co.col)), shape=co.shape), neighbours)


def _top_per_row(matrix: sp.csr_matrix, k: int) -> sp.csr_matrix:
    keep = np.zeros(matrix.nnz, dtype=bool)
    for row in range(matrix.shape[0]):
        start, end = matrix.indptr[row], matrix.indptr[row + 1]
        if end - start <= k:
            keep[start:end] = True
        else:
            keep[start + np.argpartition(-matrix.data[start:end], k - 1)[:k]] = True
    coo = matrix.tocoo()
    return sp.csr_matrix((coo.data[keep], (coo.row[keep], coo.col[keep])), shape=matrix.shape)


class ItemKnnScorer:
    """Collaborative filtering: score = recency-weighted sum of similarities to the history items."""

    name = "item_knn"

    def __init__(self, similarity: sp.csr_matrix, recency_decay: float, known: np.ndarray | None = None):
        self._similarity = similarity.astype(np.float32)
        self._decay = recency_decay
        self.known = known    # items it can score, when the caller says (fusion: see models.fusion.fuse)

    def score(self, histories: Sequence[Sequence[int]]) -> np.ndarray:
        weights = history_matrix(histories, self._similarity.shape[0], self._decay).astype(np.float32)
        return _with_padding_excluded((weights @ self._similarity).toarray())


class TextSimilarityScorer:
    """Content-based: cosine between each item's text and the shopper's recency-weighted profile.

    Needs no interactions, so it is the one baseline that can recommend cold items.
    """

    name = "text_similarity"

    def __init__(self, embeddings: np.ndarray, recency_decay: float):
        self._embeddings = torch.as_tensor(np.asarray(embeddings, dtype=np.float32))
        self._columns = self._embeddings.T.contiguous()   # a contiguous right operand: 3x faster for one shopper
        self._decay = recency_decay

    def score(self, histories: Sequence[Sequence[int]]) -> np.ndarray:
        width = max((len(h) for h in histories), default=0)   # the whole history: no max_len here
        with torch.inference_mode():
            profile = recency_text_profile(self._embeddings, left_pad(histories, max(width, 1)), self._decay)
            scores = (profile @ self._columns).numpy()
        return _with_padding_excluded(scores)


@dataclass(frozen=True)
class BaselineFit:
    """What the baselines learn from interactions: item counts and the item-kNN neighbour table."""

    counts: np.ndarray          # [n_items + 1] interactions per item_idx
    similarity: sp.csr_matrix   # [n_items + 1, n_items + 1] pruned co-occurrence cosine


def fit_baselines(cfg: BaselinesParams, split: Split) -> BaselineFit:
    """Counts and neighbours from the split's (warm) training interactions."""
    similarity = cooccurrence_cosine(split, cfg.item_knn.neighbours)
    log.info("item-kNN: %d item pairs kept (%d neighbours max)", similarity.nnz, cfg.item_knn.neighbours)
    return BaselineFit(train_counts(split), similarity)


def baseline_scorers(fit: BaselineFit, embeddings: np.ndarray, cfg: BaselinesParams,
                     known: np.ndarray | None = None) -> list[Scorer]:
    """Popularity, item-kNN and text similarity, in this order (the fusion's sum follows it).
    `known`: the items popularity and item-kNN speak for (None: all); the others are new
    products, which the fusion ranks by the scorers that can (models.fusion.fuse)."""
    return [
        PopularityScorer(fit.counts, known),
        ItemKnnScorer(fit.similarity, cfg.item_knn.recency_decay, known),
        TextSimilarityScorer(embeddings, cfg.text.recency_decay),
    ]
