"""Consistency vs personalisation: how far a shopper's scores lean toward what is popular.

A blend of the personalised scores with log-popularity, both z-scored over the items they can
score: weight 1 is the evaluated recommender, weight 0 popularity. The popularity is that of the
shopper's segment (`interest segments`: what shoppers like them take) where they have one, else
everyone's. Thin histories say little about a shopper, so their weight shrinks in proportion to
their length.
"""
from __future__ import annotations

from typing import Mapping

import numpy as np
import pandas as pd


def personal_weight(personalisation: float, n_history: int, thin_history: int) -> float:
    """serving.personalisation, shrunk for histories shorter than serving.thin_history."""
    if thin_history <= 0:
        return personalisation
    return personalisation * min(1.0, n_history / thin_history)


def segment_log_popularity(popularity: pd.DataFrame, index: Mapping[str, int], counts: np.ndarray,
                           prior: float) -> dict[int, np.ndarray]:
    """segment -> log(1 + its item popularity) by item_idx: the segment's shoppers per item plus
    `prior` pseudo-counts spread as everyone's popularity is (a Dirichlet prior), so a small
    segment, and every item its table leaves out (too few of its shoppers: disclosure control),
    leans on what everyone takes instead of tying at zero."""
    everyone = counts.astype(np.float64) / max(float(counts.sum()), 1.0)
    rows = popularity.assign(idx=popularity["item"].map(index)).dropna(subset=["idx"])
    out = {}
    for segment, part in rows.groupby("segment"):
        taken = np.zeros(len(counts))
        taken[part["idx"].astype(np.int64).to_numpy()] = part["shoppers"].clip(lower=0).to_numpy(float)
        out[int(segment)] = np.log1p(taken + prior * everyone)
    return out


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
