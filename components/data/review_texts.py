"""The written reviews (text, stars, time) that feedback processing learns from: reviews.dataset
read like any Amazon category (mirror, earlier download, or the original public file), shoppers
pseudonymised on the way in as ingestion does, so no raw id travels on."""
from __future__ import annotations

import logging

import numpy as np
import pandas as pd

from components.core.config.schema import Params
from components.core.errors import DataSourceError
from components.data.ingest import pseudonym_key, pseudonymise, sample_users
from components.data.sources.locate import read_dataset

log = logging.getLogger(__name__)

COLUMNS = ["user", "item", "rating", "timestamp", "text"]


def review_text(summary: pd.Series, body: pd.Series) -> pd.Series:
    """The title then the body: the title alone often says the verdict ("Not worth it")."""
    title = summary.fillna("").astype(str).str.strip()
    text = body.fillna("").astype(str).str.strip()
    joined = np.where((title != "") & (text != ""), title + ". " + text, title + text)
    return pd.Series(joined, index=summary.index)


def read_review_texts(params: Params) -> pd.DataFrame:
    """user (pseudonym), item, rating, timestamp (Unix s), text: the reviews with stars and words."""
    cfg = params.reviews
    raw = read_dataset(params, cfg.dataset).reviews
    if raw.empty or raw["rating"].isna().all():
        raise DataSourceError(f"dataset '{cfg.dataset}' has no reviews with star ratings; set reviews.dataset "
                              f"to a category whose original reviews file is in the mirror (data.mirror_folders)")
    reviews = raw.assign(text=review_text(raw["summary"], raw["text"]))
    reviews = reviews[(reviews["text"] != "") & reviews["rating"].notna()]
    if cfg.sample_users:
        reviews = sample_users(reviews, cfg.sample_users, params.data.seed)
    reviews = reviews.assign(user=pseudonymise(reviews["user"].astype("string"), pseudonym_key(params),
                                               params.ingest.pseudonym_length))
    log.info("%d reviews with text and stars of %d shoppers, %d products (%s)", len(reviews),
             reviews["user"].nunique(), reviews["item"].nunique(), cfg.dataset)
    return reviews[COLUMNS].reset_index(drop=True)
