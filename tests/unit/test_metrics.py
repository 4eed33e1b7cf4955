"""Ranking metrics on hand-computed cases: ties, padding, masking, NDCG values, beyond-accuracy."""
from __future__ import annotations

import math

import numpy as np
import pytest

from components.evaluation.metrics import (
    apply_protocol,
    case_metrics,
    catalogue_coverage,
    item_self_information,
    mask_history,
    masked_target_ranks,
    novelty,
    ranking_summary,
    target_ranks,
    top_k_items,
)

NEG = -np.inf


def scores(*rows: list[float]) -> np.ndarray:
    return np.array(rows, dtype=np.float32)


def test_rank_counts_higher_items_and_tied_others_against_the_target():
    s = scores([NEG, 0.9, 0.5, 0.5, 0.1])
    assert target_ranks(s, np.array([1])).tolist() == [0]
    assert target_ranks(s, np.array([2])).tolist() == [2]  # 0.9 above, item 3 tied
    assert target_ranks(s, np.array([3])).tolist() == [2]
    assert target_ranks(s, np.array([4])).tolist() == [3]


def test_constant_scorer_earns_nothing():
    n_items = 50
    s = np.zeros((3, n_items + 1), dtype=np.float32)
    ranks = target_ranks(s, np.array([1, 25, 50]))
    assert ranks.tolist() == [n_items - 1] * 3
    summary = ranking_summary(ranks, [5, 10, 20])
    assert all(summary[f"{m}@{k}"] == 0.0 for m in ("recall", "ndcg") for k in (5, 10, 20))


def test_padding_column_never_competes():
    s = scores([100.0, 0.2, 0.1])
    assert target_ranks(s, np.array([2])).tolist() == [1]
    assert top_k_items(s, 2).tolist() == [[1, 2]]


def test_mask_hides_history_but_never_the_target():
    s = scores([NEG, 0.9, 0.5, 0.7], [NEG, 0.9, 0.5, 0.7])
    histories, targets = [[1, 3], [1, 2]], np.array([2, 2])
    masked = mask_history(s, histories, targets)
    assert masked[0].tolist() == pytest.approx([NEG, NEG, 0.5, NEG])
    assert masked[1].tolist() == pytest.approx([NEG, NEG, 0.5, 0.7])  # target 2 is in the history: kept
    assert target_ranks(masked, targets).tolist() == [0, 1]
    assert target_ranks(s, targets).tolist() == [2, 2]
    assert s[0, 1] == pytest.approx(0.9)  # input untouched


def test_masked_ranks_from_unmasked_ones_equal_ranking_the_masked_matrix():
    rng = np.random.default_rng(0)
    s = np.round(rng.normal(size=(50, 30)), 1).astype(np.float32)      # rounded: ties occur
    s[:, 0] = NEG
    histories = [list(rng.integers(1, 30, size=rng.integers(0, 12))) for _ in range(50)]   # repeats too
    targets = np.array([h[0] if h and i % 5 == 0 else rng.integers(1, 30) for i, h in enumerate(histories)])
    ranks = target_ranks(s, targets)
    expected = target_ranks(mask_history(s, histories, targets), targets)
    assert (expected < ranks).any()
    assert masked_target_ranks(s, ranks, histories, targets).tolist() == expected.tolist()


def test_protocols():
    s = scores([NEG, 0.9, 0.5])
    assert apply_protocol(s, [[1]], np.array([2]), "unmasked") is s
    assert apply_protocol(s, [[1]], np.array([2]), "masked")[0, 1] == NEG
    with pytest.raises(ValueError, match="unknown protocol"):
        apply_protocol(s, [[1]], np.array([2]), "sampled")


def test_recall_ndcg_and_full_mrr_values():
    m = case_metrics(np.array([0, 1, 9, 10, 99]), [10])
    assert m["recall@10"].tolist() == [1, 1, 1, 0, 0]
    assert m["ndcg@10"].tolist() == pytest.approx([1.0, 1 / math.log2(3), 1 / math.log2(11), 0.0, 0.0])
    assert m["mrr"].tolist() == pytest.approx([1.0, 0.5, 0.1, 1 / 11, 0.01])  # not truncated at k
    summary = ranking_summary(np.array([0, 3]), [1, 5])
    assert summary["recall@1"] == 0.5 and summary["recall@5"] == 1.0
    assert summary["ndcg@5"] == pytest.approx((1.0 + 1 / math.log2(5)) / 2)
    assert summary["mrr"] == pytest.approx((1.0 + 0.25) / 2)


def test_batched_ranks_equal_row_by_row():
    rng = np.random.default_rng(0)
    s = rng.integers(0, 5, size=(64, 31)).astype(np.float32)  # many ties
    targets = rng.integers(1, 31, size=64)
    whole = target_ranks(s, targets)
    for row in range(64):
        items, t = s[row, 1:], s[row, targets[row]]
        assert whole[row] == (items > t).sum() + (items == t).sum() - 1


def test_top_k_best_first():
    assert top_k_items(scores([9, 1, 3, 2, NEG]), 3).tolist() == [[2, 3, 1]]


def test_coverage_and_novelty():
    top = np.array([[1, 2], [2, 3]])
    assert catalogue_coverage(top, n_items=10) == pytest.approx(0.3)
    info = item_self_information(np.array([0, 3, 1, 0]), pseudocount=1.0)  # shares 4/7, 2/7, 1/7
    assert info[0] == 0.0
    assert info[1:].tolist() == pytest.approx([-math.log2(4 / 7), -math.log2(2 / 7), -math.log2(1 / 7)])
    assert novelty(np.array([[1, 3]]), info) == pytest.approx((-math.log2(4 / 7) - math.log2(1 / 7)) / 2)
