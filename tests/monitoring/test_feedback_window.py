"""Feedback read back from a real SQLite store: checked by the Great Expectations suite (bad rows
quarantined with the expectation they failed, a bot flood among them) and turned into online
metrics per model tag, arm and policy."""
from __future__ import annotations

import time
from pathlib import Path

import pytest

from components.data.validate import QUARANTINE, STOP
from components.feedback.events import Event
from components.feedback.store import FeedbackStore, sqlite_url
from components.monitoring.feedback_checks import check_feedback, quarantine_reasons
from components.monitoring.online_metrics import online_metrics

EXPECTATIONS = Path(__file__).resolve().parents[2] / "expectations"
ON_FAILURE = {"event_id_not_null": QUARANTINE, "shopper_not_null": QUARANTINE, "kind_known": QUARANTINE,
              "feedback_item_in_catalogue": QUARANTINE, "not_a_bot_flood": QUARANTINE,
              "feedback_rating_in_range": QUARANTINE}
CATALOGUE = [f"i{n}" for n in range(20)]


@pytest.fixture
def store(tmp_path):
    opened = FeedbackStore(sqlite_url(tmp_path / "feedback.db"), flush_seconds=60)
    yield opened
    opened.close()


def serve(store: FeedbackStore, request_id: str, user: str, items: list[str], arm: str = "a", tag: str = "m:1") -> None:
    store.log_slate(request_id, user=user, session_id=None, arm=arm, model_tag=tag, policy="greedy", by="user",
                    items=[(item, 1.0, 1.0) for item in items])


def test_bad_rows_are_quarantined_with_the_expectation_they_failed(store, tmp_path):
    good = [Event(f"g{n}", "click", f"u{n}", f"i{n}") for n in range(5)]
    unknown_item = [Event("x1", "click", "u1", "not-in-catalogue")]
    bad_kind = [Event("x2", "teleport", "u2", "i2")]
    flood = [Event(f"bot{n}", "click", "bot", f"i{n % 20}") for n in range(40)]
    store.record(good + unknown_item + bad_kind + flood)
    window = store.events_between(0, time.time() + 1)
    check = check_feedback(window, CATALOGUE, 30, EXPECTATIONS, ON_FAILURE, tmp_path / "docs")
    assert not check.refused and len(check.valid) == 5 and set(check.valid["event_id"]) == {e.event_id for e in good}
    assert quarantine_reasons(check) == {"feedback_item_in_catalogue": 1, "kind_known": 1, "not_a_bot_flood": 40}
    assert check.summary()["quarantined"] == 42


def test_a_window_with_the_wrong_schema_is_refused_whole(store, tmp_path):
    store.record([Event("g1", "click", "u1", "i1")])
    window = store.events_between(0, time.time() + 1).drop(columns="arm")
    check = check_feedback(window, CATALOGUE, 30, EXPECTATIONS, ON_FAILURE, tmp_path / "docs")
    assert check.refused and check.valid.empty and len(check.quarantined) == 1
    assert [f.name for f in check.failed if f.action == STOP] == ["feedback_columns_match_schema"]


def test_online_metrics_per_tag_and_arm(store):
    serve(store, "r1", "u1", ["i1", "i2", "i3"])
    serve(store, "r2", "u2", ["i4", "i5", "i6"])
    serve(store, "r3", "u3", ["i7", "i8", "NEW-1"], arm="b", tag="m:2")
    store.record([Event("e1", "impression", "u1", "i1", request_id="r1"),
                  Event("e2", "click", "u1", "i2", request_id="r1"),     # position 2: gain 1/log2(3)
                  Event("e3", "purchase", "u1", "i2", request_id="r1"),
                  Event("e4", "click", "u3", "NEW-1", request_id="r3")])  # position 3: gain 1/2
    now = time.time() + 1
    rows = {(r["model_tag"], r["arm"]): r for r in online_metrics(
        store.slates_between(0, now), store.events_between(0, now), catalogue_size=30, new_items={"NEW-1"},
        k=10, horizon_seconds=3600)}
    a, b = rows[("m:1", "a")], rows[("m:2", "b")]
    assert a["slates"] == 2 and a["items_shown"] == 6 and a["ctr"] == pytest.approx(1 / 6, abs=1e-6)
    assert a["purchase_rate"] == pytest.approx(0.5) and a["coverage"] == pytest.approx(6 / 30, abs=1e-6)
    assert a["ndcg@10"] == pytest.approx(1 / 1.584962500721156, abs=1e-6) and a["slates_with_next_action"] == 1
    assert b["new_item_share"] == pytest.approx(1 / 3, abs=1e-6) and b["ndcg@10"] == pytest.approx(0.5)
