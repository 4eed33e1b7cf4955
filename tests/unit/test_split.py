"""The split on hand-built interactions: seeded cold hold-out, leave-one-out order."""
import pandas as pd

from components.data.split import build_item_index, leave_one_out


def test_split_is_seeded():
    inter = pd.DataFrame({"user": ["u"] * 6 + ["v"] * 6, "item": list("abcdef") + list("fedcba"),
                          "position": list(range(6)) * 2})
    items = pd.DataFrame({"item": list("abcdefgh")})
    a = build_item_index(items, inter, 0.34, seed=1)
    assert a.equals(build_item_index(items, inter, 0.34, seed=1))
    assert a["is_cold"].sum() == 2
    split = leave_one_out(inter, build_item_index(items, inter, 0.0, seed=1))
    u_test = split.cases[(split.cases.user == "u") & (split.cases.split == "test")].iloc[0]
    assert u_test.target == 6 and u_test.history == [1, 2, 3, 4, 5]  # f is item 6; a..e before it
