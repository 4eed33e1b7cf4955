"""Batch-major ranking: every scorer ranks each batch, the fusion reading its parts' scores of it."""
from __future__ import annotations

import numpy as np

from components.core.config.loader import load_params
from components.evaluation.ranking import PROTOCOLS, LastBatchScores, rank_cases, rank_cases_by_scorer
from components.models.fusion import FusionScorer
from tests.conftest import ROOT

N_ITEMS = 30


class CountingScorer:
    """Scores that depend on the history and the seed; counts the shoppers it scored."""

    def __init__(self, name: str, seed: int, known: np.ndarray | None = None):
        self.name, self.seed, self.scored = name, seed, 0
        if known is not None:
            self.known = known

    def score(self, histories):
        self.scored += len(histories)
        return np.stack([np.random.default_rng([self.seed, *h]).standard_normal(N_ITEMS + 1).astype(np.float32)
                         for h in histories])


def test_the_fusion_reads_its_parts_batch_scores_and_ranks_as_alone():
    cfg = load_params(ROOT / "params.yaml", environ={}).evaluate.model_copy(update={"batch_size": 7})
    rng = np.random.default_rng(0)
    histories = [list(rng.integers(1, N_ITEMS + 1, size=rng.integers(1, 6))) for _ in range(40)]
    targets = rng.integers(1, N_ITEMS + 1, size=40)
    known = np.r_[False, rng.random(N_ITEMS) > 0.2]
    parts = [CountingScorer("a", 1), CountingScorer("b", 2, known)]
    alone = rank_cases(FusionScorer(parts, [1.0, 0.5], cold_offset=0.3), histories, targets, cfg)
    assert [p.scored for p in parts] == [40, 40]
    kept = [LastBatchScores(p) for p in parts]
    ranked = rank_cases_by_scorer([*kept, FusionScorer(kept, [1.0, 0.5], cold_offset=0.3)], histories, targets, cfg)
    assert [p.scored for p in parts] == [80, 80]             # once more each: the fusion computed nothing again
    for protocol in PROTOCOLS:
        np.testing.assert_array_equal(ranked[2][protocol].ranks, alone[protocol].ranks)
        np.testing.assert_array_equal(ranked[2][protocol].top, alone[protocol].top)
        np.testing.assert_array_equal(ranked[0][protocol].ranks, rank_cases(parts[0], histories, targets, cfg)[protocol].ranks)
