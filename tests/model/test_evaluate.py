"""Evaluation end to end on the real 400-shopper sample: a quickly trained model and the baselines."""
from __future__ import annotations

import re

import numpy as np
import pandas as pd
import pytest

from components.core.config import Params
from components.core.io import read_json
from components.data.split import load_split
from components.evaluation.benchmark import quality_report
from components.evaluation.fusion_tuning import tune_fusion
from components.evaluation.metrics import PROTOCOLS, case_metrics, target_ranks
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


def test_baselines_beat_chance_and_fusion_matches_the_best_single_on_valid(evaluated):
    """Up to the warm cost new products' exposure may buy (fusion.max_warm_drop)."""
    params, results = evaluated
    protocol = params.fusion.protocol
    metric = f"ndcg@{params.fusion.metric_k}"
    valid = results[protocol]["valid"]
    best_single = max(valid[m][metric] for m in FUSED)
    assert valid["fusion"][metric] >= (1 - params.fusion.max_warm_drop) * best_single - 1e-6
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


def test_bench_quality_tables_list_ours_and_published_per_protocol(evaluated):
    params, _ = evaluated
    unmasked, masked = quality_report(params).split("protocol masked:")
    for name in ("item_knn", "fusion", "SASRec", "TIGER", "OneRec-SFT (1.7B)"):
        assert name in unmasked
    for name in ("item_knn", "fusion", "BSARec", "WEARec", "TV-Rec", "GRAM"):
        assert name in masked
    assert "BSARec" not in unmasked and "TIGER" not in masked
    other = quality_report(params.model_copy(update={"data": params.data.model_copy(update={"dataset": "Toys_and_Games"})}))
    assert "GRAM" in other and "BSARec" not in other and "fusion" in other


def test_training_curves_figure_has_one_panel_per_numeric_key():
    history = [{"epoch": 1, "loss": 9.1, "valid_ndcg@10": 0.01, "note": "warm-up"},
               {"epoch": 2, "loss": 8.4, "valid_ndcg@10": 0.02, "note": ""}]
    fig = training_curves_figure(history)
    assert [ax.get_title() for ax in fig.axes] == ["loss", "valid_ndcg@10"]
    assert fig.axes[0].lines[0].get_xdata().tolist() == [1, 2]


def test_new_products_get_the_exposure_the_warm_budget_buys(served_sample):
    """The calibrated offset keeps valid warm-target NDCG@10 within fusion.max_warm_drop of the
    fusion that never shows new products, and a larger one would break the budget."""
    params = served_sample
    split = load_split(params)
    scorers = build_scorers(params, split, load_item_embeddings(params))["valid"][:4]   # the fused ones
    valid = split.cases[split.cases["split"] == "valid"]
    histories, targets, cold = list(valid["history"]), valid["target"].to_numpy(), valid["target_is_cold"].to_numpy()
    tuned = tune_fusion(scorers, histories, targets, cold, params.fusion, params.evaluate.batch_size)
    new = partly_known(tuned.weights, [known_items(s) for s in scorers])

    def warm_ndcg(offset: float, hide_new: bool = False) -> float:
        fused = FusionScorer(scorers, tuned.weights, cold_offset=offset).score(histories)
        if hide_new:
            fused[:, new] = -np.inf
        return case_metrics(target_ranks(fused, targets), [10])["ndcg@10"][~cold].mean()

    assert new.any()
    floor = (1 - params.fusion.max_warm_drop) * warm_ndcg(0.0, hide_new=True)
    assert warm_ndcg(tuned.cold_offset) >= floor - 1e-9
    if warm_ndcg(params.fusion.cold_offset_max) < floor:   # the budget binds: a little more would break it
        assert warm_ndcg(tuned.cold_offset + 0.05) < floor
    assert read_json(params.path(params.evaluate.metrics_file))["fusion_cold_offset"] == tuned.cold_offset
