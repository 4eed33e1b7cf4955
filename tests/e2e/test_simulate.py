"""`interest simulate` against the real service on the registered sample: held-out shoppers ask for
slates by their shop ids and send their impressions, clicks and purchases back; the store then
holds exactly the events the simulation reports, tied to the slates that showed them."""
from __future__ import annotations

import sqlite3

import pytest

from components.core.config.loader import load_params
from components.benches.simulate import simulate
from tests.e2e.service_process import sample_service_env, start_service

pytestmark = pytest.mark.e2e
TOKEN = "simulation-token"
SHOPPERS = 60


def test_simulated_shoppers_leave_exactly_their_events_in_the_store(served_sample, tmp_path):
    params = load_params(served_sample.root / "params.yaml", environ={})
    server = start_service(sample_service_env(served_sample, tmp_path, TOKEN), tmp_path / "server.log")
    try:
        summary = simulate(params, server.url, TOKEN, SHOPPERS)
    finally:
        server.stop()
    assert summary["shoppers"] == SHOPPERS and summary["impressions"] == SHOPPERS * params.simulate.k
    assert 0 < summary["clicks"] <= SHOPPERS and summary["purchases"] <= summary["clicks"]
    assert summary["ctr"] == pytest.approx(summary["clicks"] / summary["impressions"], abs=1e-6)
    with sqlite3.connect(tmp_path / "feedback.db") as db:
        kinds = dict(db.execute("SELECT kind, count(*) FROM events GROUP BY kind").fetchall())
        unplaced = db.execute("SELECT count(*) FROM events WHERE position IS NULL OR propensity IS NULL").fetchone()[0]
        slates = db.execute("SELECT count(*) FROM slates").fetchone()[0]
    assert kinds == {k: v for k, v in {"impression": summary["impressions"], "click": summary["clicks"],
                                        "purchase": summary["purchases"]}.items() if v}
    assert unplaced == 0 and slates == SHOPPERS   # every event knows where its slate showed its item
