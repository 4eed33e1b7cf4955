"""The service's work in process (components.serving.app) on the registered sample: A/B arms by
pseudonymised shopper, recorded with every slate and event; the personalisation knob."""
from __future__ import annotations

import sqlite3

import pytest

from components.core.config import load_params
from components.serving.app import FeedbackInput, ServingApp

pytestmark = pytest.mark.model


@pytest.fixture
def app(served_sample, tmp_path):
    env = {"INTEREST__SERVING__STORE_URL": f"sqlite:///{tmp_path / 'feedback.db'}",
           "INTEREST__SERVING__ADDED_ITEMS_DIR": str(tmp_path / "added"),
           "INTEREST__SERVING__ARMS": "[{name: a, share: 0.5}, {name: b, share: 0.5, policy: softmax}]"}
    serving = ServingApp(load_params(served_sample.root / "params.yaml", environ=env))
    yield serving
    serving.close()


def test_each_shopper_keeps_an_arm_and_the_arm_decides_the_policy(app, tmp_path):
    item = app.recommender.catalogue["item"].iloc[0]
    answers = {}
    for n in range(40):
        user = f"shopper-{n}"
        app.feedback([FeedbackInput(f"e-{n}", "click", user, item)])
        answers[user] = [app.recommend(user=user, k=5) for _ in range(2)]
    for first, second in answers.values():
        assert first["arm"] == second["arm"]
        assert first["policy"] == {"a": "greedy", "b": "softmax"}[first["arm"]]
    assert {a[0]["arm"] for a in answers.values()} == {"a", "b"}
    app.store.flush()
    with sqlite3.connect(tmp_path / "feedback.db") as db:
        slate_arms = dict(db.execute("SELECT request_id, arm FROM slates").fetchall())
        event_arms = {r[0] for r in db.execute("SELECT arm FROM events")}
    assert all(slate_arms[a["request_id"]] == a["arm"] for pair in answers.values() for a in pair)
    assert event_arms == {"a", "b"}


def test_no_personalisation_gives_every_shopper_the_popular_ranking(served_sample, tmp_path):
    env = {"INTEREST__SERVING__STORE_URL": f"sqlite:///{tmp_path / 'feedback.db'}",
           "INTEREST__SERVING__PERSONALISATION": "0"}
    app = ServingApp(load_params(served_sample.root / "params.yaml", environ=env))
    try:
        histories = app.recommender.bundle.histories().head(5)["history"]
        lists = [[i["item"] for i in app.recommend(items=list(h), k=10, hide_history=False)["items"]]
                 for h in histories]
    finally:
        app.close()
    assert all(lst == lists[0] for lst in lists)
