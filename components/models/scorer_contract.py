"""The one contract every recommender honours, so evaluation, fusion and the service treat the
interest model and the baselines alike."""
from __future__ import annotations

from typing import Protocol, Sequence

import numpy as np


class Scorer(Protocol):
    """Scores the whole catalogue for a batch of shoppers given their item histories.

    histories: item_idx lists (1..n_items, oldest first). Returns float32 [len(histories),
    n_items + 1]; column 0 is the padding item and is never recommended.
    """

    name: str

    def score(self, histories: Sequence[Sequence[int]]) -> np.ndarray: ...
