"""Baselines and fusion on hand-built interactions and scores."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from components.data.split import Split
from components.evaluation.metrics import mask_history, top_k_items
from components.models.baselines import (
    ItemKnnScorer,
    PopularityScorer,
    TextSimilarityScorer,
    cooccurrence_cosine,
    recency_weights,
)
from components.models.fusion import FusionScorer, zscore_rows


def hand_split(histories: dict[str, list[int]], n_items: int) -> Split:
    """A split whose training histories are exactly `histories` (item_idx 1..n_items)."""
    item_index = pd.DataFrame({"item": [f"i{k}" for k in range(1, n_items + 1)],
                               "item_idx": np.arange(1, n_items + 1), "is_cold": False})
    train = pd.DataFrame([(u, i, p) for u, seq in histories.items() for p, i in enumerate(seq)],
                         columns=["user", "item_idx", "position"])
    cases = pd.DataFrame(columns=["user", "split", "history", "target", "target_is_cold"])
    return Split(item_index, train, cases)


def test_recency_weights_favour_recent_items():
    assert recency_weights(3, 0.5).tolist() == [0.25, 0.5, 1.0]
    assert recency_weights(2, 1.0).tolist() == [1.0, 1.0]


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


def test_zscore_rows_handles_refused_items_and_constant_rows():
    z = zscore_rows(np.array([[-np.inf, 1, 2, 3, -np.inf], [0, 4, 4, 4, 4]], dtype=np.float32))
    assert z[0, 1:4].tolist() == pytest.approx([-1.2247449, 0.0, 1.2247449], abs=1e-6)
    assert z[0, 4] == pytest.approx(z[0, 1])  # refused item ranks with the lowest, no veto
    assert z[1].tolist() == [0, 0, 0, 0, 0]


def test_fusion_skips_zero_weight_scorers_and_rejects_all_zero():
    pop = PopularityScorer(np.array([0, 5, 1, 3]))
    assert top_k_items(FusionScorer([pop, pop], [1.0, 0.0]).score([[1]]), 3).tolist() == [[1, 3, 2]]
    with pytest.raises(ValueError, match="non-zero weight"):
        FusionScorer([pop], [0.0])


def test_text_similarity_profile_weighs_recent_items_more():
    emb = np.zeros((4, 2), np.float32)
    emb[1], emb[2], emb[3] = [1, 0], [0, 1], [0.6, 0.8]
    scores = TextSimilarityScorer(emb, recency_decay=0.5).score([[1, 2], [], [2, 1, 1]])
    profile = np.array([0.5, 1.0]) / np.linalg.norm([0.5, 1.0])       # item 2 most recent, weight 1
    np.testing.assert_allclose(scores[0, 1:], emb[1:] @ profile, atol=1e-6)
    assert scores[1, 1:].tolist() == [0, 0, 0] and np.isneginf(scores[:, 0]).all()   # no history: no preference
    repeated = np.array([1.5, 0.25]) / np.linalg.norm([1.5, 0.25])    # item 1 twice sums 1 + 0.5
    np.testing.assert_allclose(scores[2, 1:], emb[1:] @ repeated, atol=1e-6)


def test_fusion_does_not_penalise_items_a_scorer_cannot_score():
    """Item 3 is a new product (the caller says so, not its zero count): popularity cannot score
    it, so it is fused over the other scorer alone, rescaled to the full weight; items both know
    get the plain weighted sum."""
    pop = PopularityScorer(np.array([0, 5, 1, 0, 2]), known=np.array([False, True, True, False, True]))
    content = PopularityScorer(np.array([0, 1, 2, 9, 3]))
    content.known = None                                  # stands for a scorer that knows every item
    z_pop, z_content = zscore_rows(pop.score([[1]])), zscore_rows(content.score([[1]]))
    fused = FusionScorer([pop, content], [0.5, 1.0]).score([[1]])[0]
    for item in (1, 2, 4):
        assert fused[item] == pytest.approx(0.5 * z_pop[0, item] + z_content[0, item])
    assert fused[3] == pytest.approx(1.5 * z_content[0, 3])   # not 0.5 * (a zero count's low z)


def test_an_item_without_counts_is_not_new_unless_the_caller_says_so():
    """A zero count is no evidence that an item is new (in 5-core data it means its interactions
    all fall among held-out targets): without `known`, popularity ranks it last like any item."""
    pop = PopularityScorer(np.array([0, 5, 1, 0, 2]))
    assert pop.known is None
    other = PopularityScorer(np.array([0, 1, 2, 9, 3]))
    fused = FusionScorer([pop, other], [0.5, 1.0], cold_offset=10.0).score([[1]])[0]
    z_pop, z_other = zscore_rows(pop.score([[1]])), zscore_rows(other.score([[1]]))
    assert fused[3] == pytest.approx(0.5 * z_pop[0, 3] + z_other[0, 3])   # plain sum, no offset
