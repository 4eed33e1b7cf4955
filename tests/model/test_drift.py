"""Evidently drift reports on the registered sample: feedback that engages with items drawn the
way training did shows no popularity drift, a surge on a few rarely bought products does, in
Evidently's own JSON (read back) and in the HTML reports and index it writes; against a previous
window, the same surge again is stable and ordinary feedback after it drifts."""
from __future__ import annotations

import time

import numpy as np
import pandas as pd
import pytest

from components.core.config.loader import load_params
from components.monitoring.drift import Feedback, drift_reports
from components.serving.recommender import load_recommender

pytestmark = pytest.mark.model
WINDOW = 400   # engagements a window holds


def engagements(items: list[str], users: list[str]) -> pd.DataFrame:
    now = time.time()
    return pd.DataFrame({"event_id": [f"e{n}" for n in range(len(items))], "kind": "click", "user": users,
                         "item": items, "at": now, "received_at": now})


def test_a_surge_on_rare_products_drifts_and_ordinary_feedback_does_not(served_sample, tmp_path):
    params = load_params(served_sample.root / "params.yaml", environ={})
    # a side's texts as many as a window's rows: Evidently draws a t-SNE map of every row compared,
    # most of the test's time
    monitor = params.monitor.model_copy(update={"text_drift_rows": WINDOW})
    recommender = load_recommender(served_sample)
    histories = recommender.bundle.histories()
    rng = np.random.default_rng(0)
    ordinary = pd.Series([i for h in histories["history"] for i in h]).sample(WINDOW, random_state=1).tolist()
    counts = recommender.popularity_counts()
    catalogue = recommender.catalogue.assign(count=counts[recommender.catalogue["item_idx"].to_numpy()])
    rare = catalogue.nsmallest(5, "count")["item"].tolist()
    surge = [rare[n % len(rare)] for n in range(WINDOW)]
    users = [f"u{int(n)}" for n in rng.integers(0, 150, WINDOW)]
    no_slates = pd.DataFrame({"items": pd.Series([], dtype=object)})

    calm_window, surge_window = (Feedback(engagements(items, users), no_slates) for items in (ordinary, surge))
    calm = drift_reports(recommender, calm_window, None, monitor, tmp_path, "calm")
    stormy = drift_reports(recommender, surge_window, None, monitor, tmp_path, "surge")
    calm_views, stormy_views = ({v["view"]: v for v in r["views"]} for r in (calm, stormy))
    assert calm_views["items"]["drifted"] is False and stormy_views["items"]["drifted"] is True
    assert stormy_views["texts"]["drifted"] is True and stormy_views["texts"]["drift_score"] > calm_views["texts"]["drift_score"]
    assert calm_views["scores"]["drifted"] is None   # no slates served: no verdict, and it says why
    assert calm["drifted"] is False and stormy["drifted"] is True   # shopper activity has no vote
    assert (tmp_path / "surge" / "items.html").stat().st_size > 10_000
    index = (tmp_path / "index.html").read_text()
    assert "surge" in index and "calm" in index and "<b>drift</b>" in index

    again = drift_reports(recommender, Feedback(engagements(surge[::-1], users), no_slates), ("surge", surge_window),
                          monitor, tmp_path, "surge-again")
    after = drift_reports(recommender, calm_window, ("surge", surge_window), monitor, tmp_path, "after")
    assert again["reference"] == after["reference"] == "window surge"
    assert again["drifted"] is False and after["drifted"] is True
    assert {v["view"]: v["drifted"] for v in again["training_views"]}["items"] is True   # the surge, against training
    assert (tmp_path / "surge-again" / "training" / "items.html").is_file() and "against the training data" in \
        (tmp_path / "index.html").read_text()
