"""The known shoppers' best scores, computed once when a version loads.

A known shopper who has not engaged since training gets the same scores on every request: their
history and the model are fixed until one of them changes. Scoring the catalogue for them
(the sequence encoder, a product with every item's representation and text) was most of a
request's time, so each shopper's `depth` best served scores are kept instead, and a request
draws its slate from them. The slate is the full scoring's exactly whenever the items a policy
can reach (greedy: k; exploring: its pool) are all among the kept ones once the request's
hidden items are taken out; otherwise, and for shoppers with new engagements, the request
scores the catalogue as before.
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np

from components.core.batch_slices import batch_slices
from components.serving.policies import candidates

log = logging.getLogger(__name__)
NONE = -1   # item slot of a shopper with fewer finite scores than depth


@dataclass(frozen=True)
class ShopperTops:
    rows: dict[str, int]       # shopper pseudonym -> row
    items: np.ndarray          # [shoppers, depth] item_idx, best first (ties: lower index first), NONE past the end
    scores: np.ndarray         # [shoppers, depth] their served scores (float64: what a slate is drawn from)
    n_scored: int              # catalogue size the rows were computed over (padding included)

    def scores_of(self, user: str, hidden: Sequence[int], reach: int) -> np.ndarray | None:
        """The shopper's served scores as a full row (-inf past the kept ones), or None when the
        kept ones may not hold every item a draw can reach once `hidden` is taken out."""
        row = self.rows.get(user)
        if row is None:
            return None
        items, scores = self.items[row], self.scores[row]
        kept = items[items != NONE]
        complete = len(kept) < items.shape[0]   # every finite score is kept
        if not complete and len(kept) - np.isin(kept, hidden).sum() < reach:
            return None
        full = np.full(self.n_scored, -np.inf)
        full[kept] = scores[: len(kept)]
        return full


def shopper_tops(histories: dict[str, Sequence[int]], served_scores: Callable[[Sequence[str], Sequence[Sequence[int]]],
                 np.ndarray], depth: int, batch_size: int, n_scored: int) -> ShopperTops:
    """Each shopper's `depth` best served scores. served_scores(users, histories) -> [B, n_scored]:
    exactly the scores a request for them would draw its slate from."""
    started = time.monotonic()
    users = list(histories)
    items = np.full((len(users), depth), NONE, dtype=np.int32)
    scores = np.full((len(users), depth), -np.inf)
    for chunk in batch_slices(len(users), batch_size):
        batch = users[chunk]
        rows = served_scores(batch, [histories[u] for u in batch])
        for offset, row in enumerate(rows):
            best = candidates(row, depth)
            items[chunk.start + offset, : len(best)] = best
            scores[chunk.start + offset, : len(best)] = row[best]
    log.info("kept the %d best scores of %d known shoppers in %.1f s", depth, len(users), time.monotonic() - started)
    return ShopperTops(dict(zip(users, range(len(users)))), items, scores, n_scored)
