"""The peers' protocol on hand-built splits: only the split's hold-out makes an item new, and a
peer's exported scores are ranked by our metrics, history removed under `masked`."""
import json
import math

import numpy as np
import pandas as pd
import pytest
import torch

from components.core.config.loader import load_params
from components.core.errors import InterestError
from components.data.split import build_item_index, leave_one_out
from components.benches.peers import peer_test_figures
from components.models.baselines import fit_baselines
from components.models.fusion import FusionScorer, fused_scorers, zscore_rows
from components.models.interest_model import InterestModel, InterestModelConfig
from components.models.interest_scorer import ModelScorer
from components.training.train import known_mask
from tests.conftest import ROOT

TEXT_DIM = 8


def _split(cold_fraction: float = 0.0, seed: int = 0):
    """Four shoppers; item z is only ever the last (test) item of u1 and u2."""
    sequences = {"u1": list("abcdz"), "u2": list("bcdez"), "u3": list("cdefa"), "u4": list("defab")}
    inter = pd.DataFrame([(u, item, pos) for u, seq in sequences.items() for pos, item in enumerate(seq)],
                         columns=["user", "item", "position"])
    items = pd.DataFrame({"item": list("abcdefz")})
    return leave_one_out(inter, build_item_index(items, inter, cold_fraction, seed))


def _scorer(split) -> ModelScorer:
    torch.manual_seed(0)
    n = len(split.item_index)
    text = torch.nn.functional.normalize(torch.randn(n + 1, TEXT_DIM), dim=-1)
    text[0] = 0
    config = InterestModelConfig(n_items=n, max_len=5, hidden=8, mode="id+text", text_dim=TEXT_DIM)
    return ModelScorer(InterestModel(config, text, known_mask(split.item_index)))


def test_an_item_whose_interactions_are_all_test_targets_is_scored_as_a_trained_item():
    split = _split()
    z = int(split.item_index.set_index("item").loc["z", "item_idx"])
    valid_targets = split.cases.loc[split.cases["split"] == "valid", "target"]
    assert z not in set(split.train["item_idx"]) and z not in set(valid_targets)    # only test targets hold it
    scorer = _scorer(split)
    assert scorer.model.known[z] == 1 and scorer.id_items[z]       # its ID embedding, as the peers score it
    cfg = load_params(ROOT / "params.yaml").baselines
    fit = fit_baselines(cfg, split)
    assert fit.counts[z] == 0
    embeddings = scorer.model.text.numpy()
    parts = fused_scorers(fit, embeddings, cfg, scorer)
    weights = [1.0, 1.0, 1.0, 1.0]
    histories = [list(h) for h in split.cases.loc[split.cases["split"] == "test", "history"]]
    fused = FusionScorer(parts, weights, cold_offset=10.0).score(histories)
    plain = sum(zscore_rows(p.score(histories)) for p in parts)
    np.testing.assert_allclose(fused[:, z], plain[:, z], rtol=1e-5, atol=1e-5)    # no new-product offset


def test_only_the_split_hold_out_makes_an_item_new():
    split = next(s for s in (_split(0.2, seed) for seed in range(50)) if s.item_index["is_cold"].any())
    cold = split.item_index.loc[split.item_index["is_cold"], "item_idx"].to_numpy()
    scorer = _scorer(split)
    assert not scorer.id_items[cold].any() and scorer.id_items[1:].sum() == len(split.item_index) - len(cold)
    cfg = load_params(ROOT / "params.yaml").baselines
    parts = fused_scorers(fit_baselines(cfg, split), scorer.model.text.numpy(), cfg, scorer)
    assert all(not p.known[cold].any() for p in parts[:2])          # popularity and item-kNN: new products


def _write_peer_scores(folder, split, target_of: dict, shuffle_seed: int = 1) -> None:
    """A peer's export: its own column order ([PAD] first), its own row order; each case's
    history items score highest, its target next, everything else lower."""
    tokens = ["[PAD]", *np.random.default_rng(shuffle_seed).permutation(split.item_index["item"]).tolist()]
    column = {t: c for c, t in enumerate(tokens)}
    ids = split.item_index.set_index("item_idx")["item"]
    test = split.cases[split.cases["split"] == "test"].iloc[::-1]       # rows in another order than the split's
    scores = np.zeros((len(test), len(tokens)), dtype=np.float32)
    for row, (history, user) in enumerate(zip(test["history"], test["user"])):
        scores[row, [column[ids[i]] for i in history]] = 10.0
        scores[row, column[target_of[user]]] = 5.0
    folder.mkdir(parents=True, exist_ok=True)
    np.save(folder / "scores.npy", scores)
    (folder / "cases.json").write_text(json.dumps({"user": list(test["user"]), "target": [target_of[u] for u in test["user"]]}))
    (folder / "items.json").write_text(json.dumps(tokens))


def test_peer_scores_are_ranked_by_our_metrics_with_history_removed_when_masked(tmp_path):
    split = _split()
    test = split.cases[split.cases["split"] == "test"]
    ids = split.item_index.set_index("item_idx")["item"]
    targets = {u: ids[t] for u, t in zip(test["user"], test["target"])}
    _write_peer_scores(tmp_path / "peer", split, targets)
    figures = peer_test_figures(tmp_path / "peer", split, batch_size=3)
    # unmasked: the 4 distinct history items rank above the target (rank 4); masked: it ranks first
    assert figures["unmasked"]["recall@10"] == 1.0
    assert figures["unmasked"]["ndcg@10"] == pytest.approx(1 / math.log2(4 + 2))
    assert figures["masked"] == {"recall@10": 1.0, "ndcg@10": 1.0}


def test_peer_scores_with_other_targets_are_refused(tmp_path):
    split = _split()
    test = split.cases[split.cases["split"] == "test"]
    _write_peer_scores(tmp_path / "peer", split, {u: "a" for u in test["user"]})
    with pytest.raises(InterestError, match="targets differ"):
        peer_test_figures(tmp_path / "peer", split, batch_size=3)
