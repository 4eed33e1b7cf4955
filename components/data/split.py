"""Leave-one-out split by time per user, plus a seeded cold-item hold-out.

Protocol of the SASRec / S3-Rec papers: each user's last item is the test target, the second
last the validation target, the rest is training. On top, a fraction of items is held out as
"cold": their interactions never reach train or valid, and test cases whose target is a cold
item measure recommendations for products the model has never seen. Which items are held out
depends on each item's id alone (a seeded hash), not on the rest of the catalogue: a data version
with more products holds out the same ones as the version before, so a model retrained on it
(from the one before, train.warm_start) and the production model hold out the same products.
"""
from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from components.core.config.schema import Params
from components.core.io import read_parquet, write_json, write_parquet
from components.data.validate import validated_paths

log = logging.getLogger(__name__)

PAD = 0  # item index 0 is padding; catalogue items are 1..n_items


@dataclass(frozen=True)
class Split:
    item_index: pd.DataFrame  # item, item_idx (1..n), is_cold
    train: pd.DataFrame       # user, item_idx, position: warm training interactions
    cases: pd.DataFrame       # user, split (valid|test), history (list[int]), target, target_is_cold

    def cases_as_ids(self, part: str) -> pd.DataFrame:
        """The cases of one part (valid|test) in item ids, as a client of the service names items:
        user, history (ids, oldest first), target (id), target_is_cold; in the cases' order."""
        ids = dict(zip(self.item_index["item_idx"], self.item_index["item"]))
        cases = self.cases[self.cases["split"] == part]
        return pd.DataFrame({"user": cases["user"].to_numpy(), "history": [[ids[i] for i in h] for h in cases["history"]],
                             "target": [ids[t] for t in cases["target"]],
                             "target_is_cold": cases["target_is_cold"].to_numpy(bool)})


def held_out_by_hash(items: np.ndarray, fraction: float, seed: int) -> np.ndarray:
    """bool per item id: the item's seeded hash, read as a number in [0, 1), is below fraction.
    Each item is drawn on its own, so about that fraction is held out, and the same items in
    every catalogue that holds them."""
    draws = b"".join(hashlib.blake2b(item.encode(), digest_size=8, key=str(seed).encode()).digest() for item in items)
    return np.frombuffer(draws, dtype=">u8") / 2.0 ** 64 < fraction


def build_item_index(items: pd.DataFrame, interactions: pd.DataFrame, cold_fraction: float,
                     seed: int) -> pd.DataFrame:
    ids = np.sort(pd.concat([items["item"], interactions["item"]]).dropna().unique().astype(str))
    index = pd.DataFrame({"item": ids, "item_idx": np.arange(1, len(ids) + 1, dtype=np.int64)})
    index["is_cold"] = held_out_by_hash(ids, cold_fraction, seed)   # its id alone: not whether it has interactions yet
    return index


def leave_one_out(interactions: pd.DataFrame, item_index: pd.DataFrame) -> Split:
    idx = dict(zip(item_index["item"], item_index["item_idx"]))
    cold = set(item_index.loc[item_index["is_cold"], "item_idx"])
    inter = interactions.sort_values(["user", "position"], kind="stable")
    train_rows, cases = [], []
    for user, items in inter.groupby("user", sort=True)["item"]:
        seq = [idx[i] for i in items]
        test_target, earlier = seq[-1], [i for i in seq[:-1] if i not in cold]
        if not earlier:
            continue
        valid_target, train_seq = earlier[-1], earlier[:-1]
        if train_seq:
            cases.append((user, "valid", train_seq, valid_target, False))
        cases.append((user, "test", earlier, test_target, test_target in cold))
        train_rows.extend((user, item, pos) for pos, item in enumerate(train_seq))
    train = pd.DataFrame(train_rows, columns=["user", "item_idx", "position"])
    case_df = pd.DataFrame(cases, columns=["user", "split", "history", "target", "target_is_cold"])
    return Split(item_index, train, case_df)


CASE_SPLITS = ("valid", "test")


def known_before(split: Split, case_split: str) -> Split:
    """The split as it stands when `case_split` cases are scored, for fitting baselines.

    Valid cases are scored knowing the training interactions; test cases also know every
    shopper's valid target (it is the last item of their test history already), so a baseline
    fit for test counts those interactions too. The learned model gets the same (train.final_epochs).
    """
    if case_split not in CASE_SPLITS:
        raise ValueError(f"case split must be one of {CASE_SPLITS}, got {case_split!r}")
    if case_split == "valid":
        return split
    valid = split.cases[split.cases["split"] == "valid"]
    seen = pd.DataFrame({"user": valid["user"].to_numpy(), "item_idx": valid["target"].to_numpy(),
                         "position": valid["history"].map(len).to_numpy()})
    return Split(split.item_index, pd.concat([split.train, seen], ignore_index=True), split.cases)


def split_statistics(interactions: pd.DataFrame, split: Split) -> dict:
    lengths = interactions.groupby("user").size()
    n_users, n_items = int(lengths.size), int(interactions["item"].nunique())
    cases = split.cases
    test = cases[cases["split"] == "test"]
    q = lengths.quantile([0.25, 0.5, 0.75, 0.9]).to_dict()
    return {
        "users": n_users,
        "items": n_items,
        "catalogue_items": int(len(split.item_index)),
        "interactions": int(len(interactions)),
        "density": round(len(interactions) / max(n_users * n_items, 1), 6),
        "sequence_length": {
            "min": int(lengths.min()), "p25": float(q[0.25]), "median": float(q[0.5]),
            "mean": round(float(lengths.mean()), 3), "p75": float(q[0.75]), "p90": float(q[0.9]),
            "max": int(lengths.max()),
        },
        "train_interactions": int(len(split.train)),
        "valid_cases": int((cases["split"] == "valid").sum()),
        "test_cases": int(len(test)),
        "cold_items": int(split.item_index["is_cold"].sum()),
        "cold_test_cases": int(test["target_is_cold"].sum()),
    }


def split_paths(params: Params) -> dict[str, Path]:
    out = params.path(params.split.out_dir)
    return {name: out / f"{name}.parquet" for name in ("item_index", "train", "cases")}


def load_split(params: Params) -> Split:
    paths = split_paths(params)
    cases = read_parquet(paths["cases"])
    cases["history"] = cases["history"].map(list)
    return Split(read_parquet(paths["item_index"]), read_parquet(paths["train"]), cases)


def run(params: Params) -> dict:
    """Pipeline step `split`: split the validated tables; write the split tables and
    metrics/data.json; return the statistics."""
    validated = validated_paths(params)
    interactions, items = read_parquet(validated["interactions"]), read_parquet(validated["items"])
    index = build_item_index(items, interactions, params.split.cold_item_fraction, params.split.seed)
    split = leave_one_out(interactions, index)
    paths = split_paths(params)
    for name, df in (("item_index", split.item_index), ("train", split.train), ("cases", split.cases)):
        write_parquet(df, paths[name])
    stats = split_statistics(interactions, split)
    write_json(stats, params.path(params.split.metrics_file))
    log.info("split: %d users, %d items, %d interactions", stats["users"], stats["items"], stats["interactions"])
    return stats
