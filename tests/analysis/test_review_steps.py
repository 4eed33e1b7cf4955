"""Both review analyses as their DVC stages run them, on a seeded sample of the real Musical
Instruments reviews with the real packaged encoder (end to end: a fine-tuning on real text takes
minutes): the fine-tuned sentiment classifier beats the majority-class and TF-IDF +
logistic-regression baselines beyond the bootstrap interval of the difference and reloads; the
suggestions report scores a review sent to the service and publishes no group under
privacy.min_group_size; both stages list what their commands read."""
from __future__ import annotations

import pandas as pd
import pytest
import torch

from components.core.config.loader import load_params
from components.core.config.reads import recording_reads
from components.core.config.schema import Params
from components.core.io import read_json, write_parquet
from components.models.sentiment import LABELS, load_classifier
from components.pipeline import run_step
from tests.conftest import ROOT, write_params
from tests.dvc_stages import stages, uncovered_reads, unlisted_locations

pytestmark = pytest.mark.e2e

REVIEWERS = 300   # ~2,200 reviews: few negative ones, as in the shop
# 128 tokens, half the product's: the long reviews, most of the fine-tuning's cost, are cut shorter;
# test macro-F1 .530, its difference with TF-IDF's .385 within [.028, .255] (at 256: .598, [.116, .318]).
# bfloat16 autocast where the processor multiplies it natively (elsewhere it is slower): the same
# figures, the step 141 s against 205 s in float32 (one thread, side by side)
BF16 = torch.ops.mkldnn._is_mkldnn_bf16_supported()
SMALL = {"reviews": {"sample_users": REVIEWERS, "sentiment": {"epochs": 3, "trainable_layers": 2, "bootstrap": 300,
                                                              "max_tokens": 128, "bf16": BF16},
                     "topics": {"candidates": [6, 10]}},
         "privacy": {"min_group_size": 5}}
COMPLAINT = "Broke after two days. The strings snapped and the tuning pegs slip, total waste of money."



@pytest.fixture(scope="module")
def reviewed(tmp_path_factory, mirror_dir) -> tuple[Params, dict, dict, set[str], set[str]]:
    """Both analyses run once on the sample, a window of served feedback with one review text in
    monitoring's folder; the params keys each read."""
    params = load_params(write_params(tmp_path_factory.mktemp("reviews"), **SMALL), environ={})
    write_parquet(pd.DataFrame({"kind": ["review", "click"], "user": ["u1", "u1"], "item": ["i1", "i2"],
                                "text": [COMPLAINT, None]}), params.path(params.monitor.out_dir) / "w1.parquet")
    write_parquet(pd.DataFrame({"kind": ["review"], "user": ["bot"], "item": ["i1"], "text": ["spam spam"]}),
                  params.path(params.monitor.out_dir) / "w1.quarantine.parquet")
    with recording_reads() as sentiment_reads:
        sentiment = run_step("sentiment", params)
    with recording_reads() as report_reads:
        report = run_step("feedback_report", params)
    return params, sentiment, report, sentiment_reads, report_reads


def test_sentiment_beats_both_baselines_beyond_the_bootstrap_interval(reviewed):
    params, summary, *_ = reviewed
    metrics = read_json(params.path(params.reviews.sentiment.metrics_file))
    models = metrics["test"]["models"]
    assert summary["beats_baselines"] is True
    for baseline in ("majority_class", "tfidf_logreg"):
        low, high = metrics["test"]["difference_intervals"][baseline]
        assert 0 < low <= models["fine_tuned_encoder"]["macro_f1"] - models[baseline]["macro_f1"] <= high
    assert set(models["fine_tuned_encoder"]["per_class"]) == set(LABELS)
    assert models["majority_class"]["per_class"]["negative"]["recall"] == 0.0
    assert metrics["split"]["test"]["labels"]["negative"] > 0


def test_the_saved_classifier_reloads_and_reads_the_verdict(reviewed):
    params, *_ = reviewed
    cfg = params.reviews.sentiment
    model = load_classifier(params.path(cfg.model_file), cfg, torch.device("cpu"))
    probabilities = model.predict_proba([COMPLAINT, "Great strings, bright tone, I love them. Five stars."], 8)
    assert probabilities.argmax(1).tolist() == [LABELS.index("negative"), LABELS.index("positive")]


def test_the_report_scores_served_reviews_and_publishes_no_small_group(reviewed):
    params, _, summary, *_ = reviewed
    metrics = read_json(params.path(params.reviews.topics.metrics_file))
    k = params.privacy.min_group_size
    assert summary["served_reviews"] == 1   # the quarantined text stays out
    assert metrics["served"]["predicted"]["negative"] == 1 and sum(metrics["served"]["negative_by_topic"].values()) == 1
    assert all(t["reviews"] >= k for t in metrics["topics"]["table"])
    assert all(t["reviews"] >= k for g in metrics["product_groups"] for t in g["topics"])
    assert all(p["reviews"] >= k for g in metrics["product_groups"] for p in g["worst_products"])
    assert all(r["reviews"] >= k for r in metrics["trend"])
    assert sum(metrics["privacy"]["suppressed"].values()) > 0
    page = params.path(params.reviews.report_file).read_text(encoding="utf-8")
    for section in ("Most frequent negative topics", "Trend over time", "Product groups with the most negative",
                    "Reviews sent to the service", "1 negative", "data:image/png;base64,", "not shown"):
        assert section in page
    worst = metrics["topics"]["table"][0]
    assert worst["name"] in page and worst["snippets"][0][:40] in page.replace("&#x27;", "'").replace("&quot;", '"')



@pytest.mark.parametrize("stage", ["sentiment", "feedback_report"])
def test_the_dvc_stages_list_what_the_commands_read(reviewed, stage):
    reads = reviewed[3] if stage == "sentiment" else reviewed[4]
    listed = stages()[stage]
    assert uncovered_reads(listed, sorted(reads)) == []
    assert unlisted_locations(listed, sorted(reads), load_params(ROOT / "params.yaml", environ={})) == []
