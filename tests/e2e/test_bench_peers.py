"""`interest bench-peers` on the 400-shopper sample in the published setting: the atomic file
gives RecBole exactly our valid and test items; RecBole's SASRec and FEARec run in the peers'
virtualenv within the budget; their exported test scores are ranked by our metrics under both
protocols next to our peers'-protocol figures, and the plot is written. A split with a cold-item hold-out is refused."""
from __future__ import annotations

import pandas as pd
import pytest

from components.core.config.loader import load_params
from components.core.errors import ConfigError, InterestError
from components.core.io import read_json
from components.data.split import load_split
from components.benches.peers import bench_peers, peers_table, run_peer, shopper_sequences, write_atomic
from components.pipeline import run_step
from tests.conftest import write_params

pytestmark = pytest.mark.e2e
BUDGET = 20   # seconds per peer: a few epochs on the sample


@pytest.fixture(scope="module")
def published_setting(tmp_path_factory, prepared_sample):
    """The sample split again without the cold-item hold-out, our model trained and evaluated on it."""
    p = prepared_sample
    params = load_params(write_params(
        tmp_path_factory.mktemp("peers"), data={"sample_users": p.data.sample_users},
        validate={"out_dir": str(p.path(p.validation.out_dir)), "expectations_dir": str(p.path(p.validation.expectations_dir))},
        embed={"out_dir": str(p.path(p.embed.out_dir))},   # the same item index: the hold-out only marks items cold
        split={"cold_item_fraction": 0}, train={"epochs": 2, "max_minutes": 0},
        benchmark={"peers": {"budget_seconds": BUDGET}}), environ={})
    for step in ("split", "train", "finetune_cold", "evaluate"):
        run_step(step, params)
    return params


def test_the_atomic_file_gives_back_our_valid_and_test_items(published_setting, tmp_path):
    split = load_split(published_setting)
    path = write_atomic(shopper_sequences(split), tmp_path, "Beauty")
    atomic = pd.read_csv(path, sep="\t")
    assert list(atomic.columns) == ["user_id:token", "item_id:token", "timestamp:float"]
    ids = dict(zip(split.item_index["item_idx"], split.item_index["item"]))
    last = atomic.sort_values("timestamp:float").groupby("user_id:token")["item_id:token"].agg(list)
    for part, offset in (("test", 1), ("valid", 2)):
        cases = split.cases[split.cases["split"] == part].set_index("user")
        assert {u: seq[-offset] for u, seq in last.items()} == {u: ids[t] for u, t in cases["target"].items()}
        assert all(seq[:-offset] == [ids[i] for i in cases.at[u, "history"]] for u, seq in last.items())
    assert len(atomic) == len(split.train) + 2 * split.cases["user"].nunique()


def test_peers_run_within_the_budget_and_are_ranked_by_our_metrics(published_setting):
    params = published_setting
    figures = bench_peers(params)
    assert read_json(params.path(params.benchmark.peers.metrics_file)) == figures
    assert set(figures["peers"]) == set(params.benchmark.peers.models) == {"SASRec", "FEARec"}
    for peer in figures["peers"].values():
        for protocol in ("unmasked", "masked"):
            assert 0 < peer[protocol]["ndcg@10"] <= peer[protocol]["recall@10"] <= 1
        # removing history items (never the target) can only lift a target
        assert peer["masked"]["ndcg@10"] >= peer["unmasked"]["ndcg@10"]
        # RecBole's own test figures are unmasked ones: ours agree with them
        assert peer["unmasked"]["ndcg@10"] == pytest.approx(peer["recbole_own_unmasked"]["ndcg@10"], abs=0.01)
        assert peer["epochs"] >= 1 and peer["stopped_because"] in ("time budget", "patience", "max epochs")
        assert peer["still_rising"] == (peer["best_epoch"] == peer["epochs"])
        # the budget is checked after each epoch: one epoch on the sample may run past it
        assert peer["train_seconds"] < 4 * BUDGET
    assert figures["budget_seconds"] == BUDGET
    assert all(set(figures["ours"][p]) == {"interest_model", "fusion"} for p in ("unmasked", "masked"))
    assert figures["published"] == {"unmasked": {}, "masked": {}}     # a sample is not the published setting
    table = peers_table(figures)
    assert "peer here" in table and "SASRec" in table and "protocol masked" in table and "protocol unmasked" in table
    assert params.path(params.benchmark.peers.plot).stat().st_size > 10_000


def test_a_split_with_cold_items_held_out_is_refused(prepared_sample):
    with pytest.raises(ConfigError, match="cold_item_fraction"):
        shopper_sequences(load_split(prepared_sample))


def test_a_missing_peers_virtualenv_is_named(tmp_path):
    params = load_params(write_params(tmp_path, benchmark={"peers": {"python": str(tmp_path / "none/bin/python")}}),
                         environ={})
    with pytest.raises(InterestError, match="make bench-peers"):
        run_peer(params, "SASRec", tmp_path, "Beauty", 1.0)
