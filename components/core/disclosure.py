"""Disclosure control for every aggregate report (segments, topics by product, A/B): a group of
fewer than privacy.min_group_size shoppers or reviews is suppressed, since its figures could
single a person out; published counts can carry Laplace noise (privacy.laplace_epsilon > 0,
one count per person: sensitivity 1)."""
from __future__ import annotations

import numpy as np
import pandas as pd

from components.core.config.schema import PrivacyParams


def publishable(sizes: pd.Series, privacy: PrivacyParams) -> pd.Series:
    """True where a group is large enough to be shown."""
    return sizes >= privacy.min_group_size


def noisy_counts(counts: pd.Series | np.ndarray, privacy: PrivacyParams,
                 rng: np.random.Generator) -> np.ndarray:
    """Counts with Laplace(1/epsilon) noise, rounded and kept >= 0; unchanged when epsilon is 0."""
    values = np.asarray(counts, dtype=float)
    if privacy.laplace_epsilon <= 0:
        return values.astype(np.int64)
    noise = rng.laplace(0.0, 1.0 / privacy.laplace_epsilon, size=values.shape)
    return np.maximum(np.rint(values + noise), 0).astype(np.int64)


def protect(table: pd.DataFrame, size_column: str, count_columns: list[str], privacy: PrivacyParams,
            seed: int) -> tuple[pd.DataFrame, int]:
    """The rows whose group is large enough, their counts noised; and how many rows were
    suppressed (reports say so rather than hide it)."""
    keep = publishable(table[size_column], privacy)
    shown = table[keep].copy()
    rng = np.random.default_rng(seed)
    for column in count_columns:
        shown[column] = noisy_counts(shown[column], privacy, rng)
    return shown, int((~keep).sum())
