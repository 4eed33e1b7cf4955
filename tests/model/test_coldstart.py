"""Cold start on the real 400-shopper sample: cold items never trained on, the adapter aligns
text-only representations without touching warm ones, text queries and added products work."""
from __future__ import annotations

import hashlib

import pandas as pd
import pytest
import torch

from components.core.config.loader import load_params
from components.core.errors import InterestError
from components.core.io import read_json
from components.data.split import load_split
from components.models.checkpoint import (cold_model_path, final_cold_model_path, final_model_path, load_checkpoint,
                                          model_path)
from components.models.interest_model import left_pad
from components.serving.recommender import add_items_from_file, load_recommender
from components.training.cold_start import (
    COLD_START_PARTS,
    _logits,
    _trying,
    adapter_loss,
    adapter_positions,
    best_scores,
    case_ndcg,
    case_ndcg_by_text_weight,
    fit_cold_adapter,
    held_out_scores,
    new_share,
    shown_by_id_logits,
)
from components.training.train import known_mask

pytestmark = pytest.mark.model


@pytest.fixture(scope="module")
def trained(served_sample):
    return served_sample


@pytest.fixture(scope="module")
def served(trained):
    return load_recommender(trained)


def test_cold_items_never_reach_training(trained):
    split = load_split(trained)
    cold = torch.tensor(split.item_index.loc[split.item_index.is_cold, "item_idx"].to_numpy())
    model, _ = load_checkpoint(model_path(trained))
    assert len(cold) and model.known[cold].sum() == 0  # the model was told they are unseen
    trained_items = set(split.train["item_idx"])
    assert not trained_items & set(cold.tolist())
    assert model.known.sum() == (~split.item_index["is_cold"]).sum()   # every other catalogue item by its ID


def test_adapter_never_worse_than_the_text_path_and_leaves_warm_items(trained):
    model, _ = load_checkpoint(model_path(trained))
    adapted, result = fit_cold_adapter(model, *adapter_positions(model, trained), trained.coldstart)
    summary = result["summary"]
    assert summary["heldout_ndcg@10_adapted"] >= summary["heldout_ndcg@10_text_path"]
    assert len(result["history"]) == trained.coldstart.epochs
    warm = model.known > 0
    with torch.no_grad():
        torch.testing.assert_close(adapted.item_representations()[warm], model.item_representations()[warm])


def test_exposure_calibration_spends_at_most_the_warm_budget(trained):
    """New products get the exposure the allowed warm-item cost buys, and no more."""
    model, _ = load_checkpoint(model_path(trained))
    cfg = trained.coldstart.model_copy(update={"epochs": 2})
    adapted, result = fit_cold_adapter(model, *adapter_positions(model, trained), cfg)
    summary = result["summary"]
    exposure = summary["exposure"]
    assert exposure["warm_ndcg@10"] >= (1 - cfg.max_warm_drop) * summary["warm_ndcg@10_text_path"] - 1e-6
    assert cfg.offset_range[0] <= exposure["offset"] <= cfg.offset_range[1]
    assert adapted.text_only_match.tolist() == pytest.approx([exposure["weight"], exposure["offset"]], abs=1e-5)
    text_match = summary["text_match"]   # chosen on the valid cases, the weight 0 (no text) among the choices
    assert text_match["weight"] in cfg.text_weights and adapted.text_match.item() == text_match["weight"]
    assert text_match["warm_ndcg@10"] >= summary["warm_ndcg@10_text_path"] - 1e-6


@pytest.mark.parametrize("weight,offset", [(0.0, 0.0), (3.0, -2.5), (40.0, 7.0), (1.0, 60.0)])
def test_held_out_table_ranks_as_the_whole_catalogue(trained, weight, offset):
    """The exposure search ranks from a table of the held-out items' scores; it must give the
    very ranks scoring the catalogue gives, for any weight and offset."""
    adapted, _ = load_checkpoint(cold_model_path(trained))
    _, select_on = adapter_positions(adapted, trained)
    items = adapted.item_representations().detach()
    held = torch.nonzero(adapted.known).squeeze(1)[::7]          # warm items shown by text alone
    table = held_out_scores(adapted, items, held, select_on, batch_size=64)
    with _trying(adapted.text_only_match, [weight, offset]):
        whole = case_ndcg(adapted, items, held, select_on, batch_size=64)
    assert torch.isin(select_on.targets, held).any() and (whole > 0).any()
    torch.testing.assert_close(table.ndcg(weight, offset), whole, rtol=0, atol=0)


def test_text_query_returns_items_deterministically(served):
    first = served.recommend(text="gentle fragrance-free moisturiser for dry skin", k=5)
    again = served.recommend(text="gentle fragrance-free moisturiser for dry skin", k=5)
    assert len(first) == 5 and first["item"].is_unique
    pd.testing.assert_frame_equal(first, again)
    assert not first.equals(served.recommend(text="black nail polish", k=5))


def test_history_and_empty_shopper_get_recommendations(trained, served):
    split = load_split(trained)
    item = split.item_index.loc[~split.item_index.is_cold, "item"].iloc[0]
    recs = served.recommend(items=[item], k=5)
    assert len(recs) == 5 and item not in set(recs["item"])
    default = served.recommend(k=5)
    assert len(default) == 5 and default["item"].is_unique


def test_added_items_are_retrievable_without_retraining(trained, tmp_path):
    trained = load_params(trained.root / "params.yaml", environ={"INTEREST__SERVING__ADDED_ITEMS_DIR": str(tmp_path)})
    bundle = load_recommender(trained).bundle.checkpoint
    before = hashlib.sha256(bundle.read_bytes()).hexdigest()
    new = pd.DataFrame({"item": ["NEW-1", "NEW-2"],
                        "title": ["zzz aurora borealis glow-in-the-dark unicorn bath bomb",
                                  "heavy duty carbide drill bit for masonry"]})
    file = tmp_path / "new_items.csv"
    new.to_csv(file, index=False)
    added = add_items_from_file(trained, file)
    assert added["added"] == 2
    recommender = load_recommender(trained)
    ranking = recommender.recommend(text="aurora borealis glow-in-the-dark unicorn bath bomb", k=10_000)
    other = recommender.recommend(text="heavy duty carbide drill bit for masonry", k=10_000)
    rank = {name: list(r["item"]).index("NEW-1") for name, r in (("own", ranking), ("other", other))}
    assert rank["own"] < rank["other"]
    assert hashlib.sha256(bundle.read_bytes()).hexdigest() == before  # no retraining, model untouched
    with pytest.raises(InterestError, match="already in the catalogue"):
        add_items_from_file(trained, file)


def test_cold_start_evaluation_reports_every_setting(trained):
    results = read_json(trained.path(trained.coldstart.metrics_file))
    assert results["cases"]["cold_items"] > 0
    for subset in ("cold_items", "warm_items"):
        assert {"popularity", "text_similarity", "interest_model", "interest_model_cold", "fusion"} == set(results[subset])
    assert set(results["new_shoppers_by_history_length"]) == {"0", "1", "2", "3", "full"}
    assert results["cold_items"]["popularity"]["recall@10"] == 0.0  # by construction, not a result
    assert "warm_drop_within_budget" in results["checks"]
    ranking = read_json(trained.path(trained.evaluate.metrics_file))["unmasked"]   # the served fusion, as evaluated
    for subset, same in (("cold_items", "test_cold"), ("warm_items", "test_warm")):
        one_case = 1 / results["cases"][subset]   # scored in other batches: a float near-tie may flip one case
        for metric in ("recall@10", "ndcg@10"):
            assert results[subset]["fusion"][metric] == pytest.approx(ranking[same]["fusion"][metric], abs=one_case)
    assert "served_cold_over_warm_recall" in results["checks"]


def test_text_weights_ranked_in_one_pass_as_one_at_a_time(trained):
    adapted, _ = load_checkpoint(cold_model_path(trained))
    _, select_on = adapter_positions(adapted, trained)
    items = adapted.item_representations().detach()
    held = torch.nonzero(adapted.known).squeeze(1)[::7]
    by_weight = case_ndcg_by_text_weight(adapted, items, held, select_on, 64, [0.0, 2.0, 16.0])
    for weight, ndcg in by_weight.items():
        with _trying(adapted.text_match, weight):
            whole = case_ndcg(adapted, items, held, select_on, batch_size=64)
        assert (ndcg != whole).float().mean() <= 0.01        # the same ranks, up to float rounding ties
    assert not torch.equal(by_weight[0.0], by_weight[16.0])


def test_final_models_learnt_the_valid_items_and_keep_the_adapter(trained):
    """train.final_epochs: the tested and served model is the selected one after epochs that
    includes every shopper's valid item; the served one carries the adapter fitted to the selected."""
    split = load_split(trained)
    selected, final = load_checkpoint(model_path(trained))[0], load_checkpoint(final_model_path(trained))[0]
    assert torch.equal(final.known, known_mask(split.item_index))       # new products: the split's hold-out alone
    assert torch.equal(final.known, selected.known)
    valid = split.cases[split.cases["split"] == "valid"]
    seqs = left_pad(list(valid["history"]), selected.cfg.max_len)
    targets = torch.zeros_like(seqs)
    targets[:, -1] = torch.tensor(valid["target"].to_numpy())
    with torch.no_grad():                                  # the valid items are training data now
        assert final(seqs, targets) < selected(seqs, targets)
    adapted, served = load_checkpoint(cold_model_path(trained))[0], load_checkpoint(final_cold_model_path(trained))[0]
    for name, value in served.state_dict().items():
        source = adapted if name.startswith(COLD_START_PARTS) else final
        if name != "text_only_match":
            assert torch.equal(value, source.state_dict()[name]), name
    # new products' offset moved so that they keep the share of the valid lists they had
    exposure = read_json(trained.path(trained.coldstart.adapter_metrics_file))["final_exposure"]
    assert served.text_only_match[0] == adapted.text_only_match[0]
    assert served.text_only_match[1].item() == pytest.approx(exposure["offset"], abs=1e-4)
    valid_histories = list(valid["history"])
    assert new_share(*best_scores(served, valid_histories, 10, 64), 0.0) == pytest.approx(exposure["share"])
    assert exposure["share"] == pytest.approx(exposure["reference_share"], abs=0.01) and exposure["share"] > 0
    assert new_share(*best_scores(adapted, valid_histories, 10, 64), 0.0) == pytest.approx(exposure["reference_share"])


def test_adapter_loss_is_the_catalogue_cross_entropy(trained):
    """The adapter's steps read the catalogue's log-sum-exp from a table: the same loss and
    gradients as the cross-entropy over the whole catalogue's logits."""
    adapted, _ = load_checkpoint(cold_model_path(trained))
    fit_on, _ = adapter_positions(adapted, trained)
    items = adapted.item_representations().detach()
    text_only = torch.nonzero(adapted.known).squeeze(1)[::5]
    idx = torch.arange(min(512, len(fit_on)))
    by_id = shown_by_id_logits(adapted, items, fit_on, 64)
    params = [*adapted.cold_adapter.parameters(), adapted.text_only_match]
    with _trying(adapted.text_only_match, [1.5, -0.5]):
        fast = adapter_loss(adapted, items, text_only, fit_on, by_id, idx)
        full = torch.nn.functional.cross_entropy(*_logits(adapted, items, text_only, fit_on, idx))
        fast_grads, full_grads = torch.autograd.grad(fast, params), torch.autograd.grad(full, params)
    assert torch.isin(fit_on.targets[idx], text_only).any()
    torch.testing.assert_close(fast, full, rtol=1e-5, atol=1e-5)
    for a, b in zip(fast_grads, full_grads):
        torch.testing.assert_close(a, b, rtol=1e-3, atol=1e-6)
