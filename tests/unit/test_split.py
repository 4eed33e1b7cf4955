"""The split on hand-built interactions: seeded cold hold-out, stable as the catalogue grows;
leave-one-out order."""
import numpy as np
import pandas as pd

from components.data.split import build_item_index, leave_one_out


def test_split_is_seeded():
    inter = pd.DataFrame({"user": ["u"] * 6 + ["v"] * 6, "item": list("abcdef") + list("fedcba"),
                          "position": list(range(6)) * 2})
    items = pd.DataFrame({"item": list("abcdefgh")})
    a = build_item_index(items, inter, 0.34, seed=1)
    assert a.equals(build_item_index(items, inter, 0.34, seed=1))
    assert a["is_cold"].any() and not a["is_cold"].all()
    split = leave_one_out(inter, build_item_index(items, inter, 0.0, seed=1))
    u_test = split.cases[(split.cases.user == "u") & (split.cases.split == "test")].iloc[0]
    assert u_test.target == 6 and u_test.history == [1, 2, 3, 4, 5]  # f is item 6; a..e before it


def test_the_hold_out_keeps_its_items_as_the_catalogue_grows():
    """A later data version with more products and interactions holds out the same earlier
    products (a retrained model and production agree on what is new), and about the fraction."""
    rng = np.random.default_rng(0)
    first = [f"p{n}" for n in range(2000)]
    grown = first + [f"q{n}" for n in range(2000)]

    def held_out(ids: list[str], seed: int = 42) -> pd.Series:
        inter = pd.DataFrame({"user": rng.integers(0, 300, len(ids)).astype(str), "item": ids,
                              "position": np.arange(len(ids))})
        index = build_item_index(pd.DataFrame({"item": ids}), inter, 0.05, seed)
        return index.set_index("item")["is_cold"].loc[ids]

    before, after = held_out(first), held_out(grown)
    assert after.loc[first].equals(before)
    assert 0.03 < before.mean() < 0.07 and 0.03 < after.loc[grown[2000:]].mean() < 0.07   # 4 sd of 2,000 draws
    assert not held_out(first, seed=43).equals(before)
