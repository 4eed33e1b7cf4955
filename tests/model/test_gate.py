"""The gate on the registered sample, in a copy of its model store: the first candidate is
promoted, asking again promotes nothing twice, and a worse candidate (popularity alone; a model
trained on shuffled targets) is refused with its figures and reasons recorded (gate.json and the
candidate's metadata) while production stays. A production version that over-exposes new
products does not lock out a candidate that gives them their floor share, nor does a lead on new
products within the noise of their few cases."""
from __future__ import annotations

import shutil

import numpy as np
import pytest

from components.core.config.loader import load_params
from components.core.config.schema import Params
from components.core.io import read_json, read_parquet, write_json, write_parquet
from components.deployment.gate import PROMOTED, REFUSED, UNCHANGED, CaseResults, gate, not_worse
from components.feedback.events import Event
from components.feedback.store import open_store, sqlite_url
from components.pipeline import run_step, select_steps
from components.registry.promotion import production_tag, promotion_history
from components.registry.store import model_store, store_home
from components.serving.recommender import load_recommender
from tests.conftest import ROOT, derived_params
from tests.registry_copies import store_copy

pytestmark = pytest.mark.model


@pytest.fixture
def own_store(served_sample, tmp_path) -> Params:
    """The served sample's store, copied without its promotions: nothing is in production."""
    home = tmp_path / "store"
    shutil.copytree(store_home(served_sample), home, ignore=shutil.ignore_patterns("promotions"))
    record = tmp_path / "registered.json"
    shutil.copy(served_sample.path(served_sample.registry.record_file), record)
    env = {"INTEREST__REGISTRY__HOME": str(home), "INTEREST__REGISTRY__RECORD_FILE": str(record),
           "INTEREST__GATE__METRICS_FILE": str(tmp_path / "gate.json"),
           "INTEREST__SERVING__ADDED_ITEMS_DIR": str(tmp_path / "added")}
    return load_params(served_sample.root / "params.yaml", environ=env)


def register_popularity_only(params: Params, tag: str) -> str:
    """A copy of `tag` whose fusion weighs popularity alone (the same list for everyone), recorded
    as the newest candidate."""
    worse = store_copy(params, tag, lambda manifest: manifest.update(
        fusion_weights={name: float(name == "popularity") for name in manifest["fusion_weights"]}))
    record_file = params.path(params.registry.record_file)
    write_json({**read_json(record_file), "tag": worse}, record_file)
    return worse


def test_first_candidate_is_promoted_once_and_a_worse_one_is_refused(own_store):
    params = own_store
    first = gate(params)
    assert first["decision"] == PROMOTED and production_tag(params) == first["candidate"]
    assert first["candidate_figures"]["ndcg@10"] > 0 and first["candidate_figures"]["cases"] > 100
    assert 0 < first["candidate_figures"]["warm_recall@10"] <= 1

    again = gate(params)
    assert again["decision"] == UNCHANGED and len(promotion_history(params)) == 1

    worse = register_popularity_only(params, first["candidate"])
    refused = gate(params)
    assert refused["decision"] == REFUSED and production_tag(params) == first["candidate"]
    assert refused["candidate_figures"]["ndcg@10"] < refused["production_figures"]["ndcg@10"]
    assert any(reason.startswith("ndcg@10") for reason in refused["reasons"])
    assert read_json(params.path(params.gate.metrics_file))["decision"] == REFUSED
    assert model_store(params).get(worse).info.metadata["gate"]["decision"] == REFUSED


def _results(ndcg: float, cold: float, warm: float, n_cold: int = 1068, n_warm: int = 21295) -> CaseResults:
    """Per-case results with these means (Beauty's test has 1,068 new-product cases): the hits on
    the first cases of each kind, so a version with fewer hits misses where the other hits."""
    hits = [np.arange(n) < round(rate * n) for rate, n in ((cold, n_cold), (warm, n_warm))]
    return CaseResults(np.full(n_cold + n_warm, ndcg), np.concatenate(hits).astype(float),
                       np.arange(n_cold + n_warm) < n_cold)


def test_new_products_pass_at_their_floor_share_even_below_an_over_exposing_production():
    """Production gives new products more places than the floor at warm items' cost (figures shaped
    like a real refusal's: a better candidate was refused on new-product recall alone)."""
    params = load_params(ROOT / "params.yaml", environ={})
    production = _results(0.0560, cold=0.0815, warm=0.0980)
    fair = _results(0.0619, cold=0.0552, warm=0.1070)
    assert fair.figures()["cold_recall@10"] < production.figures()["cold_recall@10"] * (1 - params.gate.cold_recall_tolerance)
    assert not_worse(fair, production, params) == (True, [])
    starved = _results(0.0619, cold=0.4 * 0.1070, warm=0.1070)
    passed, reasons = not_worse(starved, production, params)
    assert not passed and len(reasons) == 1 and reasons[0].startswith("cold_recall@10") and "warm-target" in reasons[0]
    assert "beyond the noise of 1068 cases" in reasons[0]
    assert not_worse(starved, _results(0.0560, cold=0.044, warm=0.0980), params) == (True, [])


def test_a_lead_on_new_products_within_the_noise_of_their_cases_refuses_nothing():
    """A retraining's gate on a 5,000-shopper sample (make demo-loop): 237 new-product cases,
    production 3 hits, the candidate 1, both far below their floor share. Noise passes; the same
    rates over 20 times the cases do not."""
    params = load_params(ROOT / "params.yaml", environ={})
    production, candidate = (_results(0.0284, cold=hits / 237, warm=0.0538, n_cold=237, n_warm=4570) for hits in (3, 1))
    assert not_worse(candidate, production, params) == (True, [])
    production, candidate = (_results(0.0284, cold=hits / 237, warm=0.0538, n_cold=20 * 237, n_warm=4570) for hits in (3, 1))
    passed, reasons = not_worse(candidate, production, params)
    assert not passed and "beyond the noise of 4740 cases" in reasons[0]


def test_a_model_trained_on_shuffled_targets_is_refused(own_store, prepared_sample, tmp_path):
    """The pipeline run again on the same sample with the targets it learns from shuffled (the
    training interactions' items, the validation cases' targets; the test cases intact): the model,
    the kNN tables and the fusion weights learn noise; the gate keeps production."""
    production = gate(own_store)["candidate"]
    split = tmp_path / "split"
    shutil.copytree(prepared_sample.path(prepared_sample.split.out_dir), split)
    rng = np.random.default_rng(0)
    train, cases = read_parquet(split / "train.parquet"), read_parquet(split / "cases.parquet")
    write_parquet(train.assign(item_idx=rng.permutation(train["item_idx"].to_numpy())), split / "train.parquet")
    valid = (cases["split"] == "valid").to_numpy()   # early stopping and the fusion's weights learn from these
    cases.loc[valid, "target"] = rng.permutation(cases.loc[valid, "target"].to_numpy())
    write_parquet(cases, split / "cases.parquet")
    params = load_params(derived_params(prepared_sample, tmp_path / "shuffled", coldstart={"epochs": 20}),
                         environ={k: str(v) for k, v in {
                             "INTEREST__SPLIT__OUT_DIR": split,
                             "INTEREST__REGISTRY__HOME": store_home(own_store),
                             "INTEREST__GATE__METRICS_FILE": own_store.path(own_store.gate.metrics_file),
                             "INTEREST__SERVING__ADDED_ITEMS_DIR": tmp_path / "added"}.items()})
    for step in select_steps(to="gate")[len(select_steps(to="embed")):]:
        decision = run_step(step.name, params)
    assert decision["decision"] == REFUSED and production_tag(own_store) == production
    assert decision["candidate_figures"]["ndcg@10"] < decision["production_figures"]["ndcg@10"]


def test_the_gate_estimates_both_versions_on_the_logged_slates(own_store, tmp_path):
    """Slates production served (its greedy top-k for known shoppers), one click each on the first
    item: production's off-policy value is exactly the logged CTR, with full support; the candidate
    (popularity alone) is judged on the same logs."""
    params = load_params(own_store.root / "params.yaml", environ={
        **{k: str(v) for k, v in {"INTEREST__REGISTRY__HOME": store_home(own_store),
                                  "INTEREST__REGISTRY__RECORD_FILE": own_store.path(own_store.registry.record_file),
                                  "INTEREST__GATE__METRICS_FILE": own_store.path(own_store.gate.metrics_file),
                                  "INTEREST__SERVING__ADDED_ITEMS_DIR": own_store.path(own_store.serving.added_items_dir)}.items()},
        "INTEREST__SERVING__STORE_URL": sqlite_url(tmp_path / "feedback.db")})
    production = gate(params)["candidate"]
    served = load_recommender(params, production)
    users = served.bundle.histories()["user"].head(40).tolist()
    store = open_store(params)
    try:
        for n, user in enumerate(users):
            slate = served.rank(items=served.user_history(user), k=params.serving.top_k, policy="greedy")
            store.log_slate(f"r{n}", user=user, session_id=None, arm="control", model_tag=production, policy="greedy",
                            by="user", items=[(str(i), float(s), 1.0) for i, s in zip(slate.items, slate.scores)])
            store.flush()
            store.record([Event(f"c{n}", "click", user, str(slate.items[0]), request_id=f"r{n}")])
    finally:
        store.close()
    register_popularity_only(params, production)
    estimates = gate(params)["off_policy"]
    assert estimates["slates"] == len(users) and estimates["impressions"] == len(users) * params.serving.top_k
    assert estimates["production"] == {"value": pytest.approx(1 / params.serving.top_k), "support": 1.0,
                                       "matched_impressions": estimates["impressions"]}
    assert 0 <= estimates["candidate"]["support"] < 1
