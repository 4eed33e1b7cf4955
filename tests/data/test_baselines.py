"""Baselines and the fusion tuning on the real 400-shopper sample."""
from __future__ import annotations

import numpy as np
import pytest

from components.core.config.loader import load_params
from components.core.config.schema import Params
from components.core.io import read_parquet
from components.data.split import Split, build_item_index, leave_one_out
from components.evaluation.fusion_tuning import tune_fusion
from components.evaluation.metrics import ranking_summary, target_ranks, top_k_items
from components.models.baselines import ItemKnnScorer, PopularityScorer, cooccurrence_cosine, train_counts
from components.models.fusion import FusionScorer
from tests.conftest import ROOT

pytestmark = pytest.mark.data


@pytest.fixture(scope="module")
def sample_split(shared_sample: Params) -> Split:
    out = shared_sample.path(shared_sample.ingest.out_dir)
    interactions, items = read_parquet(out / "interactions.parquet"), read_parquet(out / "items.parquet")
    cfg = shared_sample.split
    return leave_one_out(interactions, build_item_index(items, interactions, cfg.cold_item_fraction, cfg.seed))


def test_popularity_ranks_most_popular_first(sample_split: Split):
    counts = train_counts(sample_split)
    top = top_k_items(PopularityScorer(counts).score([[1], [2, 3]]), 10)
    assert (top[0] == top[1]).all()  # the same list for everyone
    assert counts[top[0][0]] == counts.max()
    assert (np.diff(counts[top[0]]) <= 0).all()


def test_item_knn_on_real_sample_scores_only_co_occurring_items(sample_split: Split):
    sim = cooccurrence_cosine(sample_split, neighbours=20)
    item = int(np.argmax(train_counts(sample_split)))
    scores = ItemKnnScorer(sim, recency_decay=1.0).score([[item]])[0]
    users_with_item = set(sample_split.train.loc[sample_split.train["item_idx"] == item, "user"])
    co_items = set(sample_split.train.loc[sample_split.train["user"].isin(users_with_item), "item_idx"]) - {item}
    recommended = set(np.flatnonzero(scores > 0).tolist())
    assert recommended and recommended <= co_items
    assert len(recommended) <= 20


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
    weights_alone = FusionScorer(singles, fusion.weights)   # new products' exposure is calibrated apart
    assert valid_ndcg(weights_alone) >= max(valid_ndcg(s) for s in singles) - 1e-12
    recomputed = tune_fusion(singles, histories, targets, params.fusion.model_copy(update={"cache_gb": 0.0}),
                             batch_size=128)
    assert (recomputed.weights, recomputed.cold_offset) == (fusion.weights, fusion.cold_offset)   # the cache changes no figure
