"""What a shopper with no history at all is shown: popular items, not k near-identical bestsellers."""
from __future__ import annotations

import numpy as np


def popular_diverse_default(counts: np.ndarray, text: np.ndarray, k: int, pool: int,
                            diversity: float) -> list[int]:
    """item_idx of k items from the `pool` most popular, picked by maximal marginal relevance
    (text cosine as the similarity): diversity 0 = pure popularity, 1 = pure variety."""
    counts = np.asarray(counts, dtype=np.float64).copy()
    counts[0] = -1
    candidates = list(np.argsort(-counts, kind="stable")[:pool])
    relevance = counts[candidates] / max(counts[candidates].max(), 1.0)
    chosen: list[int] = []
    while candidates and len(chosen) < k:
        if chosen:
            sim = (text[candidates] @ text[chosen].T).max(axis=1)
        else:
            sim = np.zeros(len(candidates))
        best = int(np.argmax((1 - diversity) * relevance - diversity * sim))
        chosen.append(int(candidates.pop(best)))
        relevance = np.delete(relevance, best)
    return chosen
