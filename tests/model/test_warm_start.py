"""The train step on the prepared sample as the closed loop runs it: on a new data version it
starts from the model it selected on the version before; on the same data again it trains
afresh and gives the model a first run gives."""
from __future__ import annotations

import pytest

from components.core.config.loader import load_params
from components.core.io import read_parquet
from components.data.split import split_paths
from components.pipeline import run_step
from tests.conftest import derived_params, earlier_split

pytestmark = pytest.mark.model
SHORT = {"epochs": 4, "patience": 4, "final_epochs": 0, "final_newest_passes": 0}   # what is checked is where weights come from


def test_a_new_data_version_trains_on_from_the_selected_model(prepared_sample, tmp_path):
    p = prepared_sample
    earlier = earlier_split(p, tmp_path / "split_v1")
    first = run_step("train", load_params(derived_params(p, tmp_path, split={"out_dir": str(earlier)}, train=SHORT),
                                          environ={}))
    assert first["warm_start"]["used"] is False and "no selected model" in first["warm_start"]["reason"]

    params = load_params(derived_params(p, tmp_path, train=SHORT), environ={})
    warm = run_step("train", params)
    n_items = len(read_parquet(split_paths(p)["item_index"]))
    assert warm["warm_start"]["used"] is True and warm["warm_start"]["carried_items"] == n_items
    # the same valid cases, every item carried: the weights before training are the first model's exactly
    assert warm["warm_start"]["valid_ndcg@10_before"] == first["best_valid_ndcg@10"]

    again = run_step("train", params)
    assert again["warm_start"]["used"] is False and "same interactions" in again["warm_start"]["reason"]
    fresh = run_step("train", load_params(derived_params(p, tmp_path / "fresh", train={**SHORT, "warm_start": False}),
                                          environ={}))
    assert again["param_digests"] == fresh["param_digests"] != warm["param_digests"]
