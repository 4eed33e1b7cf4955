"""Shopper segments on the real 400-shopper sample with a model trained on it (2 epochs): k is the
silhouette's choice, the outputs agree with each other and the DVC stage lists what the command
reads; well-separated synthetic clusters are recovered; a segment smaller than
privacy.min_group_size is suppressed and the report says so; Laplace noise changes published
counts only when epsilon > 0; behaviour features from timestamps, ratings and categories."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.datasets import make_blobs
from sklearn.metrics import adjusted_rand_score
from typer.testing import CliRunner

from components.training.segments import (behaviour, choose_k, load_shoppers, most_specific_categories, profiles,
                                          segment_shoppers, shoppers_of)
from components.cli import app
from components.core.config.loader import load_params
from components.core.config.reads import recording_reads
from components.core.config.schema import Params, PrivacyParams
from components.core.io import read_json, read_parquet
from components.data.split import Split
from components.pipeline import run_step
from tests.conftest import ROOT, derived_params
from tests.dvc_stages import stages, uncovered_reads, unlisted_locations

SMALL_GROUP = 3
FEW_CANDIDATES = {"INTEREST__SEGMENTS__K_CANDIDATES": "[2, 3, 4, 5, 6, 7]"}


@pytest.fixture(scope="module")
def trained(tmp_path_factory, prepared_sample: Params) -> Params:
    """The prepared sample with a 2-epoch interest model trained on it; groups from SMALL_GROUP shoppers
    are published (400 shoppers share few items 10 times within a segment)."""
    params = load_params(derived_params(prepared_sample, tmp_path_factory.mktemp("segments"),
                                        privacy={"min_group_size": SMALL_GROUP}), environ={})
    run_step("train", params)
    return params


@pytest.fixture(scope="module")
def segmented(trained: Params) -> tuple[Params, dict, set[str]]:
    """`interest segments`' work on the sample, and the params keys it read."""
    with recording_reads() as reads:
        summary = segment_shoppers(trained)
    return trained, summary, reads


def with_env(params: Params, **env: str) -> Params:
    return load_params(params.root / "params.yaml", environ=env)


def test_k_is_the_highest_silhouette_and_the_outputs_agree(segmented):
    params, summary, _ = segmented
    assert summary["silhouette"][str(summary["k"])] == max(summary["silhouette"].values())
    assert set(summary["silhouette"]) == set(summary["stability_ari"]) == {str(k) for k in params.segments.k_candidates}
    assert "highest silhouette" in summary["criterion"] and all(-1 <= v <= 1 for v in summary["stability_ari"].values())
    assert read_json(params.path(params.segments.metrics_file)) == summary
    assignment = read_parquet(params.path(params.segments.assignment_file))
    train_users = set(pd.read_parquet(params.path(params.split.out_dir) / "train.parquet")["user"])
    assert set(assignment["user"]) == train_users and assignment["segment"].nunique() == summary["k"]
    sizes = assignment["segment"].value_counts()
    assert list(sizes.sort_index()) == sorted(sizes, reverse=True)     # segment 0 is the largest, and so on
    published = {s["segment"]: s for s in summary["segments"]}
    assert all(published[s]["shoppers"] == sizes[s] >= params.privacy.min_group_size for s in published)
    assert summary["privacy"]["suppressed_segments"] == int((sizes < params.privacy.min_group_size).sum())
    popularity = read_parquet(params.path(params.segments.popularity_file))
    assert set(popularity["segment"]) <= set(published)
    assert np.allclose(popularity.groupby("segment")["share"].sum(), 1.0)
    assert len(popularity) and popularity["shoppers"].min() >= params.privacy.min_group_size
    assert summary["features"]["used"] == {"model": params.segments.model_dims, "activity": 1,
                                           "text": params.segments.text_dims}
    assert summary["features"]["missing"] == ["recency: not in the data", "ratings: not in the data"]   # Beauty mirror


def test_the_dvc_stage_lists_what_segments_reads(segmented):
    """What `dvc repro` needs to know: every params key read, every file read or written (as the
    project's params.yaml names them)."""
    _, _, reads = segmented
    stage = stages()["segments"]
    assert uncovered_reads(stage, sorted(reads)) == []
    assert unlisted_locations(stage, sorted(reads), load_params(ROOT / "params.yaml", environ={})) == []
    assert {"train.final_model_file", "segments.popularity_file", "privacy.min_group_size"} <= reads


def test_well_separated_clusters_are_recovered():
    cfg = load_params(ROOT / "params.yaml", environ=FEW_CANDIDATES).segments
    points, truth = make_blobs(n_samples=600, centers=4, n_features=6, cluster_std=0.5, center_box=(-20, 20),
                               random_state=0)
    choice = choose_k(points, cfg)
    assert choice.k == 4 and choice.silhouette[4] == max(choice.silhouette.values())
    assert adjusted_rand_score(truth, choice.labels) == pytest.approx(1.0)
    assert choice.stability[4] == pytest.approx(1.0)


def test_noise_is_found_to_have_no_structure_worth_more_segments():
    """Without clusters, the criterion still returns one of the candidates and says what it measured."""
    cfg = load_params(ROOT / "params.yaml", environ=FEW_CANDIDATES).segments
    choice = choose_k(np.random.default_rng(0).normal(size=(300, 4)), cfg)
    assert choice.k in cfg.k_candidates and choice.silhouette[choice.k] < 0.3


def test_a_segment_smaller_than_the_minimum_is_suppressed_and_the_report_says_so(segmented, tmp_path):
    params, _, _ = segmented
    sizes = read_parquet(params.path(params.segments.assignment_file))["segment"].value_counts().sort_values()
    minimum = int(sizes.iloc[0]) + 1            # the smallest segment (and any of its size) falls below it
    hidden = set(sizes.index[sizes < minimum])
    strict = with_env(params, INTEREST__PRIVACY__MIN_GROUP_SIZE=str(minimum),
                      INTEREST__SEGMENTS__METRICS_FILE=str(tmp_path / "segments.json"),
                      INTEREST__SEGMENTS__REPORT_FILE=str(tmp_path / "index.html"),
                      INTEREST__SEGMENTS__ASSIGNMENT_FILE=str(tmp_path / "assignment.parquet"),
                      INTEREST__SEGMENTS__POPULARITY_FILE=str(tmp_path / "popularity.parquet"))
    summary = segment_shoppers(strict)
    assert summary["privacy"]["suppressed_segments"] == len(hidden) >= 1
    assert {s["segment"] for s in summary["segments"]} == set(sizes.index) - hidden
    assert not set(read_parquet(tmp_path / "popularity.parquet")["segment"]) & hidden
    page = (tmp_path / "index.html").read_text()
    assert f"{len(hidden)} segment(s) suppressed" in page and f"fewer than {minimum} shoppers" in page
    assert not any(f"id='segment-{s}'" in page for s in hidden)


def test_laplace_noise_changes_counts_only_when_epsilon_is_positive(segmented):
    params, _, _ = segmented
    shoppers = load_shoppers(params)
    labels = read_parquet(params.path(params.segments.assignment_file)).set_index("user")["segment"]
    labels = labels.reindex(shoppers.users).to_numpy()
    true_sizes = np.bincount(labels)
    cfg, b = params.segments, behaviour(shoppers)

    def published(epsilon: float) -> tuple[list[int], list[int]]:
        out = profiles(shoppers, labels, b, cfg, PrivacyParams(min_group_size=1, laplace_epsilon=epsilon, erasure_dir="unused"))
        return [s["shoppers"] for s in out["segments"]], out["popularity"]["shoppers"].tolist()

    exact_sizes, exact_items = published(0.0)
    assert exact_sizes == true_sizes.tolist()
    noisy_sizes, noisy_items = published(0.5)
    assert noisy_sizes != exact_sizes and noisy_items != exact_items
    assert published(0.5) == (noisy_sizes, noisy_items)   # seeded: the same noise every run


def test_the_report_has_its_sections(segmented):
    params, summary, _ = segmented
    page = params.path(params.segments.report_file).read_text()
    assert "<h2>Segments</h2>" in page and "<h2>Profiles</h2>" in page and "data:image/png;base64," in page
    assert "highest silhouette" in page
    for s in summary["segments"]:
        assert f"id='segment-{s['segment']}'" in page and f"href='#segment-{s['segment']}'" in page
        assert all(i["item"] in page for i in s["top_items"])
    assert page.count("class='profile'") == len(summary["segments"])


def test_behaviour_from_timestamps_ratings_and_categories():
    day = 86_400
    item_index = pd.DataFrame({"item": ["a", "b", "c"], "item_idx": [1, 2, 3], "is_cold": False})
    train = pd.DataFrame({"user": ["u", "u", "v"], "item_idx": [1, 2, 3], "position": [0, 1, 0]})
    interactions = pd.DataFrame({"user": ["u", "u", "v"], "item": ["a", "b", "c"],
                                 "timestamp": [0, 2 * day, 10 * day], "rating": [5.0, 3.0, 5.0]})
    items = pd.DataFrame({"item": ["a", "b", "c"], "title": ["A", "B", "C"],
                          "categories": ["Beauty, Skin Care, Face | Beauty, Gifts", None, "Beauty, Hair"]})
    shoppers = shoppers_of(Split(item_index, train, pd.DataFrame()), interactions, items)
    assert shoppers.histories == [[1, 2], [3]]
    b = behaviour(shoppers)
    assert b.loc["u"].tolist() == [2.0, 8.0, 4.0, 0.5] and b.loc["v"].tolist() == [1.0, 0.0, 5.0, 1.0]
    terms = most_specific_categories(shoppers.items.set_index("item")["categories"])
    assert sorted(terms.items()) == [("a", "Face"), ("a", "Gifts"), ("c", "Hair")]


def test_the_command_explains_itself():
    helped = CliRunner().invoke(app, ["segments", "--help"])
    assert helped.exit_code == 0 and "silhouette" in helped.output and "min_group_size" in helped.output
