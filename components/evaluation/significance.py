"""Whether one scorer's lead over another on the same cases is more than the cases' noise.

The gate compares production and a candidate on a few hundred new-product cases with a handful of
hits each: one hit more or less moves Recall@10 by more than its tolerance. A paired bootstrap
(both scorers' results on the same resampled cases, so the cases' shared difficulty cancels)
tells a lead from that noise.
"""
from __future__ import annotations

import numpy as np

CHUNK = 256   # resamples drawn at once: a [CHUNK, cases] index matrix


def paired_lead_p(leader: np.ndarray, other: np.ndarray, resamples: int, seed: int) -> float:
    """One-sided p-value of "leader's mean is above other's": the share of `resamples` paired
    bootstrap resamples of the cases in which it is not (the mean difference <= 0)."""
    difference = np.asarray(leader, dtype=np.float64) - np.asarray(other, dtype=np.float64)
    if len(difference) == 0:
        return 1.0
    rng, not_above = np.random.default_rng(seed), 0
    for start in range(0, resamples, CHUNK):
        draws = rng.integers(0, len(difference), (min(CHUNK, resamples - start), len(difference)))
        not_above += int((difference[draws].mean(axis=1) <= 0).sum())
    return not_above / resamples
