"""How good is a sentiment classifier: macro-F1 (every class counts the same, so the rare
negative reviews weigh as much as the common five-star ones) and per-class precision/recall, next
to two baselines trained on the same split, with paired bootstrap intervals of each difference."""
from __future__ import annotations

from typing import Sequence

import numpy as np
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import f1_score, precision_recall_fscore_support

from components.core.config.schema import SentimentParams


def figures(labels: np.ndarray, predicted: np.ndarray, names: Sequence[str]) -> dict:
    classes = list(range(len(names)))
    precision, recall, f1, support = precision_recall_fscore_support(labels, predicted, labels=classes,
                                                                     zero_division=0)
    return {
        "macro_f1": round(float(f1.mean()), 6),
        "accuracy": round(float((labels == predicted).mean()), 6),
        "per_class": {name: {"precision": round(float(precision[c]), 6), "recall": round(float(recall[c]), 6),
                             "f1": round(float(f1[c]), 6), "support": int(support[c])}
                      for c, name in enumerate(names)},
    }


def majority_baseline(train_labels: np.ndarray, n: int) -> np.ndarray:
    return np.full(n, np.bincount(train_labels).argmax(), dtype=np.int64)


def tfidf_baseline(train_texts: Sequence[str], train_labels: np.ndarray, texts: Sequence[str],
                   cfg: SentimentParams) -> np.ndarray:
    """Word 1-2-gram TF-IDF and a class-weighted logistic regression: the strong classic baseline."""
    vectoriser = TfidfVectorizer(ngram_range=(1, 2), max_features=cfg.tfidf_max_features, sublinear_tf=True,
                                 min_df=2, strip_accents="unicode")
    model = LogisticRegression(C=cfg.tfidf_c, class_weight="balanced", max_iter=2000, random_state=cfg.seed)
    model.fit(vectoriser.fit_transform(train_texts), train_labels)
    return model.predict(vectoriser.transform(texts)).astype(np.int64)


def bootstrap_macro_f1(labels: np.ndarray, predictions: dict[str, np.ndarray], reference: str, n_classes: int,
                       cfg: SentimentParams) -> dict:
    """Per model its macro-F1 interval, and per other model the interval of reference minus it,
    on the same resampled reviews (paired, so the shared difficulty of a sample cancels)."""
    rng = np.random.default_rng(cfg.seed)
    classes = list(range(n_classes))
    draws = {name: np.empty(cfg.bootstrap) for name in predictions}
    for b in range(cfg.bootstrap):
        idx = rng.integers(0, len(labels), len(labels))
        for name, predicted in predictions.items():
            draws[name][b] = f1_score(labels[idx], predicted[idx], labels=classes, average="macro", zero_division=0)
    lo, hi = 100 * cfg.alpha / 2, 100 * (1 - cfg.alpha / 2)

    def interval(values: np.ndarray) -> list[float]:
        return [round(float(np.percentile(values, lo)), 6), round(float(np.percentile(values, hi)), 6)]

    return {
        "intervals": {name: interval(values) for name, values in draws.items()},
        "differences": {name: interval(draws[reference] - values) for name, values in draws.items()
                        if name != reference},
    }
