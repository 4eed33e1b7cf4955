"""Leave-one-out split and cold-item hold-out on a real sample: no leakage, nothing lost."""
import pytest

from components.core.io import read_json, read_parquet
from components.data.split import known_before, load_split

pytestmark = pytest.mark.data


@pytest.fixture(scope="module")
def split_run(prepared_sample):
    stats = read_json(prepared_sample.path(prepared_sample.split.metrics_file))
    interactions = read_parquet(prepared_sample.path(prepared_sample.validation.out_dir) / "interactions.parquet")
    return prepared_sample, stats, load_split(prepared_sample), interactions


def test_test_and_valid_items_never_in_own_train(split_run):
    _, _, split, _ = split_run
    train_by_user = split.train.groupby("user")["item_idx"].agg(set)
    for case in split.cases.itertuples():
        assert case.target not in train_by_user.get(case.user, set())


def test_history_is_train_then_valid(split_run):
    _, _, split, _ = split_run
    train = split.train.sort_values(["user", "position"]).groupby("user")["item_idx"].agg(list)
    valid = split.cases[split.cases.split == "valid"].set_index("user")
    for case in split.cases[split.cases.split == "test"].itertuples():
        expected = train.get(case.user, []) + ([valid.at[case.user, "target"]] if case.user in valid.index else [])
        assert case.history == expected


def test_cold_items_absent_from_train_and_valid(split_run):
    _, stats, split, _ = split_run
    cold = set(split.item_index.loc[split.item_index.is_cold, "item_idx"])
    assert cold, "the sample must hold out some cold items"
    assert not cold & set(split.train["item_idx"])
    valid = split.cases[split.cases.split == "valid"]
    assert not cold & set(valid["target"]) and not cold & {i for h in valid["history"] for i in h}
    test = split.cases[split.cases.split == "test"]
    assert not cold & {i for h in test["history"] for i in h}
    assert test["target_is_cold"].sum() == stats["cold_test_cases"] == test["target"].isin(cold).sum()


def test_test_time_interactions_add_valid_targets_and_never_a_test_target(split_run):
    _, _, split, _ = split_run
    assert known_before(split, "valid").train is split.train
    known = known_before(split, "test").train
    valid = split.cases[split.cases.split == "valid"]
    assert len(known) == len(split.train) + len(valid)
    pairs = set(zip(known["user"], known["item_idx"]))
    assert set(zip(valid["user"], valid["target"])) <= pairs
    test = split.cases[split.cases.split == "test"]
    assert not set(zip(test["user"], test["target"])) & pairs
    for user, items in known.sort_values(["user", "position"]).groupby("user")["item_idx"]:
        assert list(items) == test.set_index("user").at[user, "history"]  # in order, as the shopper saw them
    with pytest.raises(ValueError, match="case split"):
        known_before(split, "train")


def test_counts_add_up(split_run):
    _, stats, split, inter = split_run
    assert stats["users"] == inter["user"].nunique() == stats["test_cases"]
    assert stats["interactions"] == len(inter)
    cold = set(split.item_index.loc[split.item_index.is_cold, "item"])
    idx = dict(zip(split.item_index["item"], split.item_index["item_idx"]))
    # every interaction is a train row, a valid target, a test target, or a held-out cold interaction
    test = split.cases[split.cases.split == "test"]
    n_valid = (split.cases.split == "valid").sum()
    held_out_cold = inter["item"].isin(cold).sum() - test["target_is_cold"].sum()
    assert len(split.train) + n_valid + len(test) + held_out_cold == len(inter)
    assert len(idx) == stats["catalogue_items"]
