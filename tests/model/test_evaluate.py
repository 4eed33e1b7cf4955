"""Evaluation end to end on the real 400-shopper sample: a quickly trained model and the baselines."""
from __future__ import annotations

import re

import pandas as pd
import pytest

from components.core.config import Params
from components.core.io import read_json
from components.data.split import load_split
from components.evaluation.benchmark import quality_report
from components.evaluation.metrics import PROTOCOLS
from components.evaluation.ranking import SUBSETS
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
    params, results = evaluated
    protocol = params.fusion.protocol
    metric = f"ndcg@{params.fusion.metric_k}"
    valid = results[protocol]["valid"]
    assert valid["fusion"][metric] >= max(valid[m][metric] for m in FUSED) - 1e-6
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


def test_bench_quality_table_lists_ours_and_published(evaluated):
    params, _ = evaluated
    table = quality_report(params)
    for name in ("item_knn", "fusion", "SASRec", "TIGER", "OneRec-SFT (1.7B)"):
        assert name in table


def test_training_curves_figure_has_one_panel_per_numeric_key():
    history = [{"epoch": 1, "loss": 9.1, "valid_ndcg@10": 0.01, "note": "warm-up"},
               {"epoch": 2, "loss": 8.4, "valid_ndcg@10": 0.02, "note": ""}]
    fig = training_curves_figure(history)
    assert [ax.get_title() for ax in fig.axes] == ["loss", "valid_ndcg@10"]
    assert fig.axes[0].lines[0].get_xdata().tolist() == [1, 2]
