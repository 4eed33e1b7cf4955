"""The service's work in process (components.serving.app) on the registered sample: A/B arms by
pseudonymised shopper, recorded with every slate and event; the personalisation knob and the
segment popularity it blends in for known shoppers."""
from __future__ import annotations

import sqlite3

import pytest

from components.core.config.loader import load_params
from components.registry.bundle import NO_SEGMENT
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


def test_no_personalisation_gives_a_known_shopper_their_segments_popular_ranking(served_sample, tmp_path):
    env = {"INTEREST__SERVING__STORE_URL": f"sqlite:///{tmp_path / 'feedback.db'}",
           "INTEREST__SERVING__PERSONALISATION": "0",
           "INTEREST__SERVING__SEGMENT_PRIOR": "0.5"}   # under one shopper: everyone's popularity breaks ties only
    app = ServingApp(load_params(served_sample.root / "params.yaml", environ=env))
    try:
        bundle = app.recommender.bundle
        placed = bundle.histories().query(f"segment != {NO_SEGMENT}").groupby("segment").head(2)
        lists = {user: list(app.recommender.rank(user=user, k=10, hide_history=False, policy="greedy").items)
                 for user in placed["user"]}   # the bundle's pseudonyms: the recommender behind the service
        popularity = bundle.segment_popularity()
    finally:
        app.close()
    assert placed["segment"].nunique() >= 2
    by_segment = {}
    for user, segment in zip(placed["user"], placed["segment"]):
        assert by_segment.setdefault(segment, lists[user]) == lists[user]   # one ranking per segment
        own = popularity[popularity["segment"] == segment]
        if len(own):   # the segment's most taken item leads (ties: any of them)
            assert lists[user][0] in set(own.loc[own["shoppers"] == own["shoppers"].max(), "item"])
    assert len({tuple(v) for v in by_segment.values()}) > 1


def test_thompson_learns_from_served_clicks(served_sample, tmp_path):
    """An item the model ranks low in the pool, shown often and clicked often, comes first more
    often once the counts reload; its logged propensity says so too."""
    env = {"INTEREST__SERVING__STORE_URL": f"sqlite:///{tmp_path / 'feedback.db'}",
           "INTEREST__SERVING__FEEDBACK_COUNTS_SECONDS": "0"}
    app = ServingApp(load_params(served_sample.root / "params.yaml", environ=env))
    try:
        history = list(app.recommender.bundle.histories()["history"].iloc[0])

        def first_place_share(item: str) -> float:
            answers = [app.recommend(items=history, k=3, policy="thompson") for _ in range(60)]
            assert all(a["policy"] == "thompson" and 0 < a["items"][0]["propensity"] <= 1 for a in answers)
            return sum(a["items"][0]["item"] == item for a in answers) / len(answers)

        pool = app.recommend(items=history, k=app.params.serving.explore_pool)["items"]
        favourite = pool[-1]["item"]   # the pool's lowest-scored item
        before = first_place_share(favourite)
        events = [FeedbackInput(f"s-{n}", "impression", f"u-{n}", favourite) for n in range(200)]
        events += [FeedbackInput(f"c-{n}", "click", f"u-{n}", favourite) for n in range(150)]
        app.feedback(events)
        after = first_place_share(favourite)
    finally:
        app.close()
    assert before < 0.1 and after > 0.8, (before, after)
