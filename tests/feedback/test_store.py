"""The feedback store on real databases: SQLite in WAL mode and a real PostgreSQL server."""
from __future__ import annotations

import sqlite3
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest
from sqlalchemy.exc import SQLAlchemyError
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from components.feedback.events import Event
from components.feedback.schema import metadata
from components.feedback.store import FeedbackStore, current_revision, sqlite_url
from components.serving.engaged_items import EngagedItems


@pytest.fixture(params=["sqlite", "postgresql"])
def store(request, tmp_path):
    url = sqlite_url(tmp_path / "feedback.db") if request.param == "sqlite" else request.getfixturevalue("postgres_url")
    opened = FeedbackStore(url, flush_seconds=60)   # slates reach the database only when flushed
    yield opened
    if request.param == "postgresql":   # one server for the session: leave it empty
        with opened.engine.begin() as c:
            metadata.drop_all(c)
            c.exec_driver_sql("DROP TABLE IF EXISTS alembic_version")
    opened.close()


def click(event_id: str, user: str = "u1", item: str = "i1", **kw) -> Event:
    return Event(event_id=event_id, kind="click", user=user, item=item, **kw)


def test_the_migrated_schema_is_the_declared_one(store):
    assert store.revision == current_revision(store.engine) == "0001"
    with store.engine.connect() as connection:
        assert compare_metadata(MigrationContext.configure(connection), metadata) == []


def test_concurrent_batches_commit_together_and_a_bad_one_fails_alone(store):
    """32 clients at once (group commit): each gets its own counts, a batch that breaks the
    schema is refused without taking the others with it, and a resent event is stored once."""
    start = threading.Barrier(32)

    def send(n: int):
        start.wait()
        if n == 7:
            return store.record([click("bad-a"), Event(event_id="bad-b", kind=None, user="u", item="i")])
        return store.record([click(f"e{n}", user=f"u{n}"), click(f"e{n}-again" if n % 2 else "shared")])

    with ThreadPoolExecutor(32) as pool:
        futures = [pool.submit(send, n) for n in range(32)]
    results = {n: f.exception() or f.result() for n, f in enumerate(futures)}
    assert isinstance(results.pop(7), SQLAlchemyError)
    assert sum(r.new for r in results.values()) == store.count() == 31 + 15 + 1   # "shared" once
    assert sum(r.duplicates for r in results.values()) == 15
    assert all(r.new >= 1 and len(r.engagements) == r.new for r in results.values())


def test_an_event_sent_twice_is_stored_once(store):
    assert store.record([click("e1"), click("e2")])[:2] == (2, 0)
    again = store.record([click("e2"), click("e3")])
    assert again[:2] == (1, 1) and [e.item for e in again.engagements] == ["i1"]
    assert store.count() == 3


def test_events_carry_the_position_and_propensity_they_were_shown_with(store):
    store.log_slate("r1", user="u1", session_id=None, arm="control", model_tag="m:1", policy="softmax", by="user",
                    items=[("i9", 2.0, 0.5), ("i1", 1.0, 0.25)])
    store.record([Event("e1", "impression", "u1", "i1", request_id="r1"), click("e2", request_id="r1"),
                  click("e3", item="i7", request_id="r1")])    # i7 was not in that slate
    with store.engine.connect() as c:
        rows = dict((r[0], r[1:]) for r in c.exec_driver_sql("SELECT event_id, position, propensity, model_tag FROM events"))
    assert rows == {"e1": (2, 0.25, "m:1"), "e2": (2, 0.25, "m:1"), "e3": (None, None, None)}


def test_engagements_make_the_history_in_time_order_and_reach_every_worker_by_its_poll(store):
    store.record([click("a", item="i2", at=20.0), click("b", item="i1", at=10.0),
                  Event("c", "impression", "u1", "i3", at=5.0), click("d", user="u2", item="i4")])
    worker = EngagedItems(store, refresh_seconds=3600)
    assert worker.of("u1") == ["i1", "i2"]    # impressions are not interest
    assert worker.of("nobody") == []
    store.record([click("e", item="i5", at=15.0)])          # stored by another worker
    assert worker.of("u1") == ["i1", "i2"]                  # not read before its poll
    worker.refresh()
    assert worker.of("u1") == ["i1", "i5", "i2"]            # in time order, not arrival order
    assert EngagedItems(store, refresh_seconds=0).of("u1") == ["i1", "i5", "i2"]
    worker.add(store.record([click("f", item="i6", at=12.0), click("b", item="i1", at=10.0)]).engagements)
    assert worker.of("u1") == ["i1", "i6", "i5", "i2"]      # its own write, before any read; the resent one once
    worker.refresh()
    assert worker.of("u1") == ["i1", "i6", "i5", "i2"]      # the read does not add it twice
    worker.forget("u1")
    assert worker.of("u1") == []


def test_a_failed_batch_stores_nothing(store):
    bad = [click("ok-1"), Event("bad", "click", "u1", None)]   # item is NOT NULL everywhere
    with pytest.raises(Exception):
        store.record(bad)
    assert store.count() == 0


def test_sqlite_runs_in_wal_mode(tmp_path):
    FeedbackStore(sqlite_url(tmp_path / "f.db")).close()
    with sqlite3.connect(tmp_path / "f.db") as c:
        assert c.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_closing_writes_the_queued_slates(tmp_path):
    store = FeedbackStore(sqlite_url(tmp_path / "f.db"), flush_seconds=60)
    store.log_slate("r1", user=None, session_id="s", arm="control", model_tag="m:1", policy="greedy", by="popular",
                    items=[("i1", 1.0, 1.0)])
    store.close()
    with sqlite3.connect(tmp_path / "f.db") as c:
        assert c.execute("SELECT request_id, items FROM slates").fetchall() == [("r1", '[["i1", 1.0, 1.0]]')]


def test_the_newest_slates_of_known_shoppers_come_oldest_first(store):
    for n, user in enumerate(["u1", None, "u2", "u3"]):
        store.log_slate(f"r{n}", user=user, session_id=None, arm="control", model_tag="m:1", policy="greedy",
                        by="user" if user else "popular", items=[("i1", 1.0, 1.0)])
        store.flush()
    newest = store.newest_shopper_slates(2)
    assert newest["request_id"].tolist() == ["r2", "r3"] and newest["user"].tolist() == ["u2", "u3"]
    assert store.newest_shopper_slates(10)["request_id"].tolist() == ["r0", "r2", "r3"]
