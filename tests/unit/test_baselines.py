"""Baselines and fusion: behaviour on hand-built interactions and on the real 400-shopper sample."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from components.baselines import (
    ItemKnnScorer,
    PopularityScorer,
    TextSimilarityScorer,
    cooccurrence_cosine,
    recency_weights,
    train_counts,
)
from components.config import Params, load_params
from components.device import select_device
from components.fusion import FusionScorer, tune_fusion, zscore_rows
from components.io import read_parquet
from components.metrics import mask_history, ranking_summary, target_ranks, top_k_items
from components.split import Split, build_item_index, leave_one_out
from components.text_encoder import load_text_encoder
from tests.conftest import ROOT


def hand_split(histories: dict[str, list[int]], n_items: int) -> Split:
    """A split whose training histories are exactly `histories` (item_idx 1..n_items)."""
    item_index = pd.DataFrame({"item": [f"i{k}" for k in range(1, n_items + 1)],
                               "item_idx": np.arange(1, n_items + 1), "is_cold": False})
    train = pd.DataFrame([(u, i, p) for u, seq in histories.items() for p, i in enumerate(seq)],
                         columns=["user", "item_idx", "position"])
    cases = pd.DataFrame(columns=["user", "split", "history", "target", "target_is_cold"])
    return Split(item_index, train, cases)


@pytest.fixture(scope="module")
def sample_split(shared_sample: Params) -> Split:
    out = shared_sample.path(shared_sample.ingest.out_dir)
    interactions, items = read_parquet(out / "interactions.parquet"), read_parquet(out / "items.parquet")
    cfg = shared_sample.split
    return leave_one_out(interactions, build_item_index(items, interactions, cfg.cold_item_fraction, cfg.seed))


def test_recency_weights_favour_recent_items():
    assert recency_weights(3, 0.5).tolist() == [0.25, 0.5, 1.0]
    assert recency_weights(2, 1.0).tolist() == [1.0, 1.0]


def test_popularity_ranks_most_popular_first(sample_split: Split):
    counts = train_counts(sample_split)
    top = top_k_items(PopularityScorer(counts).score([[1], [2, 3]]), 10)
    assert (top[0] == top[1]).all()  # the same list for everyone
    assert counts[top[0][0]] == counts.max()
    assert (np.diff(counts[top[0]]) <= 0).all()


def test_item_knn_recommends_co_occurring_items():
    split = hand_split({"u1": [1, 2, 3], "u2": [1, 2], "u3": [4, 5], "u4": [2, 3]}, n_items=5)
    sim = cooccurrence_cosine(split, neighbours=10)
    assert sim[1, 2] == pytest.approx(2 / np.sqrt(2 * 3))  # 2 shared users of 2 and 3
    assert sim[1, 3] == pytest.approx(1 / np.sqrt(2 * 2))
    assert sim[1, 1] == 0 and sim[1, 4] == 0
    scores = ItemKnnScorer(sim, recency_decay=1.0).score([[1]])[0]
    assert scores[0] == -np.inf
    assert top_k_items(mask_history(scores[None], [[1]], np.array([2])), 2).tolist() == [[2, 3]]
    assert scores[4] == scores[5] == 0  # never seen together with item 1
    assert cooccurrence_cosine(split, neighbours=1)[1].nnz == 1


def test_item_knn_recency_weighting_follows_the_latest_item():
    split = hand_split({"u1": [1, 2, 3], "u2": [1, 2], "u3": [4, 5], "u4": [2, 3]}, n_items=5)
    sim = cooccurrence_cosine(split, neighbours=10)
    history, target = [[4, 1]], np.array([2])  # item 1 is the most recent
    best = {decay: top_k_items(mask_history(ItemKnnScorer(sim, decay).score(history), history, target), 1)[0, 0]
            for decay in (1.0, 0.5)}
    assert best == {1.0: 5, 0.5: 2}


def test_item_knn_on_real_sample_scores_only_co_occurring_items(sample_split: Split):
    sim = cooccurrence_cosine(sample_split, neighbours=20)
    item = int(np.argmax(train_counts(sample_split)))
    scores = ItemKnnScorer(sim, recency_decay=1.0).score([[item]])[0]
    users_with_item = set(sample_split.train.loc[sample_split.train["item_idx"] == item, "user"])
    co_items = set(sample_split.train.loc[sample_split.train["user"].isin(users_with_item), "item_idx"]) - {item}
    recommended = set(np.flatnonzero(scores > 0).tolist())
    assert recommended and recommended <= co_items
    assert len(recommended) <= 20


def test_text_similarity_returns_the_nearest_text():
    cfg = load_params(ROOT / "params.yaml", environ={}).embed
    encoder = load_text_encoder(cfg.encoder, select_device("cpu"), cfg.max_tokens)
    texts = ["red matte lipstick", "shampoo for dry scalp", "matte red lip colour", "nail polish remover"]
    embeddings = np.vstack([np.zeros((1, encoder.dim), np.float32), encoder.encode(texts, batch_size=8)])
    scorer = TextSimilarityScorer(embeddings, recency_decay=0.5)
    scores = scorer.score([[1]])
    assert scores[0, 1] == pytest.approx(1.0, abs=1e-5)  # cosine with itself
    assert top_k_items(mask_history(scores, [[1]], np.array([3])), 1)[0, 0] == 3  # lipstick -> lip colour
    recent_lipstick = scorer.score([[2, 1]])[0]  # the most recent item weighs most in the profile
    assert recent_lipstick[1] > recent_lipstick[2]


def test_zscore_rows_handles_refused_items_and_constant_rows():
    z = zscore_rows(np.array([[-np.inf, 1, 2, 3, -np.inf], [0, 4, 4, 4, 4]], dtype=np.float32))
    assert z[0, 1:4].tolist() == pytest.approx([-1.2247449, 0.0, 1.2247449], abs=1e-6)
    assert z[0, 4] == pytest.approx(z[0, 1])  # refused item ranks with the lowest, no veto
    assert z[1].tolist() == [0, 0, 0, 0, 0]


def test_fusion_tuned_on_valid_is_no_worse_than_the_best_single_scorer(sample_split: Split):
    params = load_params(ROOT / "params.yaml", environ={})
    singles = [PopularityScorer(train_counts(sample_split)),
               ItemKnnScorer(cooccurrence_cosine(sample_split, 50), recency_decay=0.5)]
    valid = sample_split.cases[sample_split.cases["split"] == "valid"]
    histories, targets = list(valid["history"]), valid["target"].to_numpy()
    fusion = tune_fusion(singles, histories, targets, params.fusion, batch_size=128)

    def valid_ndcg(scorer) -> float:
        return ranking_summary(target_ranks(scorer.score(histories), targets), [10])["ndcg@10"]

    assert isinstance(fusion, FusionScorer) and set(fusion.weight_by_name) == {"popularity", "item_knn"}
    assert valid_ndcg(fusion) >= max(valid_ndcg(s) for s in singles) - 1e-12


def test_fusion_skips_zero_weight_scorers_and_rejects_all_zero():
    pop = PopularityScorer(np.array([0, 5, 1, 3]))
    assert top_k_items(FusionScorer([pop, pop], [1.0, 0.0]).score([[1]]), 3).tolist() == [[1, 3, 2]]
    with pytest.raises(ValueError, match="non-zero weight"):
        FusionScorer([pop], [0.0])
