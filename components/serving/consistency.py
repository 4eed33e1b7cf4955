"""Consistency vs personalisation: how far a shopper's scores lean toward what is popular.

A blend of the personalised scores with log-popularity, both z-scored over the items they can
score: weight 1 is the evaluated recommender, weight 0 popularity for everyone. Thin histories
say little about a shopper, so their weight shrinks in proportion to their length.
"""
from __future__ import annotations

import numpy as np


def personal_weight(personalisation: float, n_history: int, thin_history: int) -> float:
    """serving.personalisation, shrunk for histories shorter than serving.thin_history."""
    if thin_history <= 0:
        return personalisation
    return personalisation * min(1.0, n_history / thin_history)


def _standardised(scores: np.ndarray) -> np.ndarray:
    finite = np.isfinite(scores)
    out = np.full(len(scores), -np.inf)
    values = scores[finite]
    out[finite] = (values - values.mean()) / (values.std() or 1.0)
    return out


def blend_with_popularity(scores: np.ndarray, log_popularity: np.ndarray, weight: float) -> np.ndarray:
    """weight * z(scores) + (1 - weight) * z(log popularity); items the personal scores can't
    score (-inf) stay unscored."""
    scores = np.asarray(scores, dtype=np.float64)
    finite = np.isfinite(scores)
    out = np.full(len(scores), -np.inf)
    popular = _standardised(np.asarray(log_popularity[: len(scores)], dtype=np.float64))
    out[finite] = weight * _standardised(scores)[finite] + (1 - weight) * popular[finite]
    return out
