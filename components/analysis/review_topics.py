"""What reviews talk about: topics of review texts from their embeddings (k-means; the number of
topics is the candidate with the best silhouette), each named by its distinctive terms with
class-based TF-IDF (BERTopic's c-TF-IDF: a term's frequency in the topic, weighted by how rare it
is across topics), and the share of negative reviews by topic per product group and over time."""
from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import pandas as pd
from sklearn.cluster import KMeans
from sklearn.feature_extraction.text import CountVectorizer
from sklearn.metrics import silhouette_score
from threadpoolctl import threadpool_limits

from components.core.config.schema import TopicsParams

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Topics:
    labels: np.ndarray              # topic of each review
    centroids: np.ndarray           # [k, dim]: new texts are assigned to the nearest
    terms: list[list[str]]          # distinctive terms per topic, most distinctive first
    silhouette: dict[int, float]    # per candidate number of topics

    @property
    def names(self) -> list[str]:
        return [" · ".join(t[:3]) for t in self.terms]

    def assign(self, embeddings: np.ndarray) -> np.ndarray:
        return np.argmin(((embeddings[:, None, :] - self.centroids[None]) ** 2).sum(-1), axis=1)


def class_tfidf_terms(texts: pd.Series, labels: np.ndarray, k: int, cfg: TopicsParams) -> list[list[str]]:
    """c-TF-IDF: tf of term t in topic c (normalised by the topic's words) x log(1 + A / f_t),
    A the mean words per topic and f_t the term's count over all topics."""
    vectoriser = CountVectorizer(stop_words="english", min_df=min(cfg.min_df, max(len(texts) // k, 1)),
                                 token_pattern=r"(?u)\b[a-zA-Z][a-zA-Z]+\b")
    counts = vectoriser.fit_transform(texts)
    per_topic = np.vstack([np.asarray(counts[labels == c].sum(0)).ravel() for c in range(k)]).astype(float)
    tf = per_topic / np.maximum(per_topic.sum(1, keepdims=True), 1)
    idf = np.log1p(per_topic.sum(1).mean() / np.maximum(per_topic.sum(0), 1))
    vocabulary = vectoriser.get_feature_names_out()
    return [vocabulary[np.argsort(-row, kind="stable")[:cfg.terms]].tolist() for row in tf * idf]


def fit_topics(texts: pd.Series, embeddings: np.ndarray, cfg: TopicsParams) -> Topics:
    """The candidate number of topics with the highest silhouette on a seeded sample."""
    candidates = sorted(k for k in cfg.candidates if 1 < k < len(texts))
    if not candidates:
        raise ValueError(f"reviews.topics.candidates {cfg.candidates}: none between 2 and {len(texts) - 1} reviews")
    fits, silhouette = {}, {}
    with threadpool_limits(1, user_api="openmp"):   # torch's OpenMP runtime beside sklearn's slows k-means 20x
        for k in candidates:
            fits[k] = KMeans(k, n_init=3, random_state=cfg.seed).fit(embeddings)
            silhouette[k] = round(float(silhouette_score(embeddings, fits[k].labels_, random_state=cfg.seed,
                                                         sample_size=min(cfg.silhouette_sample, len(texts)))), 6)
            log.info("%d topics: silhouette %.4f", k, silhouette[k])
    best = max(candidates, key=lambda k: (silhouette[k], -k))
    labels = fits[best].labels_.astype(np.int64)
    return Topics(labels, fits[best].cluster_centers_.astype(np.float32),
                  class_tfidf_terms(texts, labels, best, cfg), silhouette)


def negative_by_topic(reviews: pd.DataFrame, by: list[str]) -> pd.DataFrame:
    """Per group of `by` (e.g. topic, or product and topic): reviews, negative reviews and their share."""
    table = reviews.groupby(by, observed=True).agg(reviews=("negative", "size"), negative=("negative", "sum"))
    return table.assign(negative_share=table["negative"] / table["reviews"]).reset_index()


def trend(reviews: pd.DataFrame, cfg: TopicsParams) -> pd.DataFrame:
    """Per period (reviews.topics.trend_period) and topic: reviews, negative reviews, their share."""
    period = pd.to_datetime(reviews["timestamp"], unit="s").dt.to_period(cfg.trend_period).astype(str)
    return negative_by_topic(reviews.assign(period=period), ["period", "topic"])
