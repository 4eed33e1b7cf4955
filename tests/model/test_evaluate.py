"""Evaluation end to end on the real 400-shopper sample: a quickly trained model and the baselines."""
from __future__ import annotations

import json
import re

import pandas as pd
import pytest

from components.core.config.schema import Params
from components.core.io import read_json
from components.data.split import load_split
from components.evaluation.benchmark import quality_report
from components.evaluation.fusion_tuning import ValidScores, calibrate_cold_offset, tune_fusion
from components.evaluation.metrics import PROTOCOLS, top_k_items
from components.evaluation.ranking import SUBSETS, build_scorers
from components.features.embeddings import load_item_embeddings
from components.models.fusion import FusionScorer, known_items, partly_known
from components.evaluation.report import training_curves_figure

pytestmark = pytest.mark.model

MODELS = {"popularity", "item_knn", "text_similarity", "interest_model", "interest_model_cold", "fusion"}
FUSED = MODELS - {"interest_model", "fusion"}   # the fusion combines the served (cold-start) model


@pytest.fixture(scope="module")
def evaluated(served_sample) -> tuple[Params, dict]:
    """A quickly trained model evaluated with the baselines on the prepared 400-shopper sample."""
    return served_sample, read_json(served_sample.path(served_sample.evaluate.metrics_file))


def test_every_model_protocol_and_subset_is_reported(evaluated):
    params, results = evaluated
    for protocol in PROTOCOLS:
        assert set(results[protocol]) <= set(SUBSETS) and {"valid", "test", "test_warm"} <= set(results[protocol])
        for subset, by_model in results[protocol].items():
            assert set(by_model) == MODELS
            for metrics in by_model.values():
                for k in params.evaluate.ks:
                    assert 0.0 <= metrics[f"ndcg@{k}"] <= metrics[f"recall@{k}"] <= 1.0
                assert 0.0 < metrics[f"coverage@{params.evaluate.beyond_k}"] <= 1.0
    assert results["cases"]["test"] == results["cases"]["test_warm"] + results["cases"].get("test_cold", 0)


def test_masking_never_hurts(evaluated):
    """Masking only removes competitors (never the target), so every accuracy figure can only rise."""
    _, results = evaluated
    for subset, by_model in results["unmasked"].items():
        for model, metrics in by_model.items():
            masked = results["masked"][subset][model]
            for name in metrics:
                if name.startswith(("recall", "ndcg", "mrr")):
                    assert masked[name] >= metrics[name] - 1e-9, (subset, model, name)


def test_baselines_beat_chance_and_every_scorer_is_fused(evaluated):
    """(That the fusion's weights are never worse on valid than its best single scorer is
    tests/data/test_baselines.py's.)"""
    params, results = evaluated
    chance = 10 / len(load_split(params).item_index)  # expected Recall@10 of a random list
    assert all(m["recall@10"] > chance for m in results["unmasked"]["test"].values())
    assert set(results["fusion_weights"]) == FUSED


def test_comparison_plot_and_self_contained_report(evaluated):
    params, _ = evaluated
    comparison = pd.read_csv(params.path(params.evaluate.comparison_file))
    assert set(comparison["model"]) == MODELS and set(comparison["protocol"]) == set(PROTOCOLS)
    page = params.path(params.evaluate.report_file).read_text(encoding="utf-8")
    assert page.count("data:image/png;base64,") >= 2
    assert not re.search(r"""(src|href)=["']https?:""", page)  # no internet needed to view it


def test_bench_quality_sets_published_rows_only_beside_the_peers_protocol_of_the_published_setting(evaluated, tmp_path):
    params, results = evaluated
    assert set(results["protocol_peers"]) == {*PROTOCOLS, "cases"}
    assert set(results["protocol_peers"]["masked"]["test"]) == MODELS
    sample = quality_report(params)      # a sample with new products held out: ours alone, both settings
    peers, deployed = sample.split("\ndeployed:")
    for part in (peers, deployed):
        assert "protocol unmasked" in part and "protocol masked" in part and "fusion" in part and "item_knn" in part
    assert "published  " not in sample and "make bench-quality-published" in sample
    # the published setting (every shopper, no hold-out): published rows in the peers' protocol tables alone
    ranking = {**results, "cases": {k: v for k, v in results["cases"].items() if k != "test_cold"}}
    (tmp_path / "ranking.json").write_text(json.dumps(ranking))
    published = params.model_copy(update={"data": params.data.model_copy(update={"sample_users": 0}),
                                          "evaluate": params.evaluate.model_copy(update={"metrics_file": tmp_path / "ranking.json"})})
    peers, deployed = quality_report(published).split("\ndeployed:")
    unmasked, masked = peers.split("protocol masked")
    for name in ("SASRec", "TIGER", "OneRec-SFT (1.7B)"):
        assert name in unmasked and name not in masked
    for name in ("BSARec", "WEARec", "TV-Rec", "GRAM"):
        assert name in masked and name not in unmasked
    assert "published  " not in deployed and "fusion" in deployed


def test_training_curves_figure_has_one_panel_per_numeric_key():
    history = [{"epoch": 1, "loss": 9.1, "valid_ndcg@10": 0.01, "note": "warm-up"},
               {"epoch": 2, "loss": 8.4, "valid_ndcg@10": 0.02, "note": ""}]
    fig = training_curves_figure(history)
    assert [ax.get_title() for ax in fig.axes] == ["loss", "valid_ndcg@10"]
    assert fig.axes[0].lines[0].get_xdata().tolist() == [1, 2]


def test_new_products_keep_the_share_of_the_lists_the_scorers_that_rank_them_give(served_sample):
    """The calibrated offset is the smallest (to the bisection's step) at which new products (the
    split's hold-out) take as many of the fused top-10 places on valid as the weighted scorers that
    know them give them; weights that include popularity and item-kNN, which do not know them."""
    params = served_sample
    split = load_split(params)
    scorers = build_scorers(params, split, load_item_embeddings(params))["valid"][:4]   # the fused ones
    valid = split.cases[split.cases["split"] == "valid"]
    histories, targets = list(valid["history"]), valid["target"].to_numpy()
    scores = ValidScores(scorers, histories, params.evaluate.batch_size, params.fusion.cache_gb)
    weights = (0.5, 0.5, 1.0, 1.0)
    offset = calibrate_cold_offset(scores, weights, targets, params.fusion)
    known = [known_items(s) for s in scorers]
    new = partly_known(weights, known)
    assert new is not None and new[1:].sum() == split.item_index["is_cold"].sum()   # the hold-out, nothing else
    seeing = [w if k is None else 0.0 for w, k in zip(weights, known)]

    def share(use, offset: float = 0.0) -> float:
        return new[top_k_items(FusionScorer(scorers, use, cold_offset=offset).score(histories), 10)].mean()

    reference = share(seeing)      # a step function of the offset: a little lower than the bisection's last step
    assert share(weights, offset) >= reference > share(weights, offset - 0.05)
    tuned = tune_fusion(scorers, histories, targets, params.fusion, params.evaluate.batch_size)
    assert read_json(params.path(params.evaluate.metrics_file))["fusion_cold_offset"] == tuned.cold_offset
