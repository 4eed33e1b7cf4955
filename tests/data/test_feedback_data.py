"""Accepted feedback becomes data: ingest of the real Beauty sample with one accepted window
appends the new engagements after each shopper's history (a re-engagement with a known item, or a
second one, adds nothing), products added since training join the catalogue, the validation
suites accept the result, and the summary names the version; writing the window again changes
neither the version nor the tables."""
from __future__ import annotations

import time

import pandas as pd
import pytest

from components.core.config.schema import Params
from components.core.io import read_json, read_parquet
from components.data.feedback_data import feedback_version, write_window
from components.data.ingest import ingest
from components.data.validate import validate

pytestmark = pytest.mark.data


def test_an_accepted_window_is_appended_to_the_interactions(sample_params: Params):
    before = ingest(sample_params)
    out = sample_params.path(sample_params.ingest.out_dir)
    inter = read_parquet(out / "interactions.parquet")
    items = read_parquet(out / "items.parquet")
    user = inter["user"].iloc[0]
    history = inter[inter["user"] == user].sort_values("position")
    unseen = items.loc[~items["item"].isin(set(history["item"])), "item"].iloc[0]
    now = int(time.time()) - 60   # arrived a minute ago: validate refuses timestamps in the future
    window = pd.DataFrame({"user": [user, user, user, "new-shopper", user],
                           "item": [history["item"].iloc[0], unseen, unseen, "NEW-PRODUCT", "NOT-ANYWHERE"],
                           "timestamp": pd.array([now, now + 1, now + 2, now + 3, now + 4], dtype="Int64"),
                           "rating": pd.array([None] * 5, dtype="Float64")})
    added = pd.DataFrame({"item": ["NEW-PRODUCT"], "title": ["a brand new serum"], "brand": [None],
                          "categories": [None], "description": [None]})
    folder = sample_params.path(sample_params.ingest.feedback_dir)
    write_window(folder, "20261125T100000Z", window, added)

    after = ingest(sample_params)
    assert before.feedback == {"windows": [], "sha256": feedback_version(folder.parent / "none")["sha256"], "appended": 0}
    assert after.feedback["windows"] == ["20261125T100000Z"] and after.feedback["appended"] == 2
    assert after.feedback["dropped"] == 3 and after.feedback["new_items"] == 1
    grown = read_parquet(out / "interactions.parquet")
    assert len(grown) == len(inter) + 2
    mine = grown[grown["user"] == user].sort_values("position")
    assert mine["item"].iloc[-1] == unseen and mine["position"].iloc[-1] == history["position"].max() + 1
    assert grown.loc[grown["user"] == "new-shopper", "position"].tolist() == [0]
    assert "NEW-PRODUCT" in set(read_parquet(out / "items.parquet")["item"])
    assert validate(sample_params).success   # the appended rows pass the same suites

    write_window(folder, "20261125T100000Z", window, added)   # a retried task
    again = ingest(sample_params)
    assert again.feedback == after.feedback
    assert read_json(out / "summary.json")["feedback"]["sha256"] == after.feedback["sha256"]
