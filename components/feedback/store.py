"""The durable feedback store: every served slate and every feedback event, in SQLite (WAL) by
default or PostgreSQL by URL, its schema kept by Alembic migrations.

An event is acknowledged only after its transaction commits, and a client may resend it: the
client's event_id makes the second copy a no-op. Served slates are many and small, so they are
written in batches by a background thread, never on the request's path; an event that names a
slate flushes the pending ones first, so its position and propensity are always found.
"""
from __future__ import annotations

import logging
import threading
import time
from concurrent.futures import Future
from pathlib import Path
from typing import Iterable, NamedTuple, Sequence

import pandas as pd
from alembic import command
from alembic.config import Config
from alembic.script import ScriptDirectory
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Engine, create_engine, event, func, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import SQLAlchemyError

from components.core.config.schema import Params
from components.core.errors import InterestError
from components.feedback.events import CLICK, ENGAGEMENTS, IMPRESSION, Event
from components.feedback.schema import events, slates

log = logging.getLogger(__name__)
MIGRATIONS = Path(__file__).with_name("migrations")


class Engagement(NamedTuple):
    """A stored engagement event as a shopper's history reads it: `when` is the event's time,
    else its arrival."""
    row_id: int
    user: str
    item: str
    when: float


class Recorded(NamedTuple):
    """What one `record` call stored: its new events and already-stored ones, and the new
    engagements among them (the calling worker adds them to its shoppers' histories at once)."""
    new: int
    duplicates: int
    engagements: list[Engagement]


class FeedbackStoreError(InterestError):
    """The store can't be opened or written; the message names the URL's database, never its password."""


def sqlite_url(path: Path) -> str:
    return f"sqlite:///{path}"


def store_url(params: Params) -> str:
    """serving.store_url, with a relative SQLite path taken from params.yaml's folder."""
    url = params.serving.store_url
    prefix = "sqlite:///"
    if url.startswith(prefix) and not url[len(prefix):].startswith("/"):
        path = params.path(Path(url[len(prefix):]))
        path.parent.mkdir(parents=True, exist_ok=True)
        return sqlite_url(path)
    return url


def open_store(params: Params) -> "FeedbackStore":
    return FeedbackStore(store_url(params), params.serving.slate_flush_seconds, params.serving.threads)


def _sqlite_pragmas(dbapi_connection, _record) -> None:
    """WAL: readers never wait for the writer; FULL: a committed event survives a crash of the
    machine, not just of the process; busy_timeout: concurrent writers queue instead of failing."""
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=FULL")
    cursor.execute("PRAGMA busy_timeout=10000")
    cursor.close()


def make_engine(url: str, connections: int = 5) -> Engine:
    """`connections`: kept open for as many request threads; fewer would be opened and closed
    per request (for SQLite, with its pragmas each time)."""
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"check_same_thread": False}, pool_size=connections)
        event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    return create_engine(url, pool_pre_ping=True, pool_size=connections)


def migrate(engine: Engine) -> str:
    """Bring the schema to the newest migration; returns the revision now in place."""
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    with engine.begin() as connection:
        cfg.attributes["connection"] = connection
        command.upgrade(cfg, "head")
    return ScriptDirectory.from_config(cfg).get_current_head()


def current_revision(engine: Engine) -> str | None:
    with engine.connect() as connection:
        return MigrationContext.configure(connection).get_current_revision()


class FeedbackStore:
    def __init__(self, url: str, flush_seconds: float = 0.2, connections: int = 5):
        self.url = url
        self.engine = make_engine(url, connections)
        try:
            self.revision = migrate(self.engine)
        except SQLAlchemyError as exc:
            raise FeedbackStoreError(f"cannot open the feedback store {self.engine.url!r} "
                                     f"(serving.store_url / INTEREST__SERVING__STORE_URL): {exc}") from exc
        self._insert = postgresql.insert if self.engine.dialect.name == "postgresql" else sqlite.insert
        self._pending: list[dict] = []
        self._lock = threading.Lock()
        self._writing = threading.Lock()
        self._queued_events: list[tuple[list[Event], Future]] = []
        self._committing = threading.Lock()   # the group commit's leader holds it
        self._flush_seconds = flush_seconds
        self._stop = threading.Event()
        self._writer = threading.Thread(target=self._write_slates, name="slate-writer", daemon=True)
        self._writer.start()

    # ------------------------------------------------------------------ served slates
    def log_slate(self, request_id: str, *, user: str | None, session_id: str | None, arm: str, model_tag: str,
                  policy: str, by: str, items: Sequence[tuple[str, float, float]]) -> None:
        """Queue one served slate ([item, score, propensity] in shown order) for the next batch."""
        row = dict(request_id=request_id, served_at=time.time(), user=user, session_id=session_id, arm=arm,
                   model_tag=model_tag, policy=policy, by=by, items=[list(i) for i in items])
        with self._lock:
            self._pending.append(row)

    def flush(self) -> int:
        """Write the queued slates now; returns how many (no transaction when none are queued)."""
        with self._writing:
            if not self._pending:
                return 0
            with self.engine.begin() as connection:
                return self._write_pending(connection)

    def _write_pending(self, connection) -> int:
        """Insert the queued slates in the caller's transaction; the caller holds `_writing` (one
        writer at a time, so rows queued earlier are in once it returns). The queue's lock is held
        only to take the rows: requests that log slates never wait for the write."""
        with self._lock:
            rows, self._pending = self._pending, []
        if rows:
            connection.execute(self._insert(slates).on_conflict_do_nothing(index_elements=["request_id"]), rows)
        return len(rows)

    def _write_slates(self) -> None:
        while not self._stop.wait(self._flush_seconds):
            try:
                self.flush()
            except SQLAlchemyError:
                log.exception("writing served slates failed; retrying with the next batch")

    def close(self) -> None:
        self._stop.set()
        self._writer.join()
        self.flush()
        self.engine.dispose()

    # ------------------------------------------------------------------ feedback events
    def record(self, batch: Iterable[Event]) -> Recorded:
        """Store the events in one transaction. Impressions and engagements with a request_id get
        the position and propensity their slate showed them with.

        Group commit: concurrent calls queue their batches, and whichever holds the commit lock
        writes every queued batch, and the served slates queued so far, in one transaction (one
        fsync for all); each call returns once the transaction holding its batch has committed. If
        that transaction fails, the batches are retried one by one, so a bad batch fails alone."""
        batch = list(batch)
        if not batch:
            return Recorded(0, 0, [])
        future: Future = Future()
        with self._lock:
            self._queued_events.append((batch, future))
        while not future.done():
            with self._committing:
                if not future.done():
                    with self._lock:
                        group, self._queued_events = self._queued_events, []
                    self._commit(group)
        return future.result()

    def _commit(self, group: list[tuple[list[Event], Future]]) -> None:
        try:
            results = self._insert_events([batch for batch, _ in group])
        except SQLAlchemyError as exc:
            if len(group) == 1:
                group[0][1].set_exception(exc)
                return
            for one in group:
                self._commit([one])
            return
        for (_, future), result in zip(group, results):
            future.set_result(result)

    def _insert_events(self, batches: list[list[Event]]) -> list[Recorded]:
        """One transaction for the queued slates and all the batches; a Recorded per batch, in
        order (an event id sent twice is new only where it first appears)."""
        now = time.time()
        with self._writing, self.engine.begin() as connection:
            self._write_pending(connection)   # an event's slate is in before the event looks it up
            shown = self._shown(connection, {e.request_id for b in batches for e in b if e.request_id})
            rows = []
            for e in (e for b in batches for e in b):
                position, propensity, model_tag = shown.get((e.request_id, e.item), (None, None, None))
                rows.append({**vars(e), "position": position, "propensity": propensity,
                             "model_tag": model_tag, "received_at": now})
            inserted = {event_id: int(row_id) for event_id, row_id in connection.execute(
                self._insert(events).on_conflict_do_nothing(index_elements=["event_id"])
                .returning(events.c.event_id, events.c.id), rows)}
        results = []
        for batch in batches:
            new, engaged = 0, []
            for e in batch:
                if (row_id := inserted.pop(e.event_id, None)) is not None:
                    new += 1
                    if e.kind in ENGAGEMENTS:
                        engaged.append(Engagement(row_id, e.user, e.item, now if e.at is None else e.at))
            results.append(Recorded(new, len(batch) - new, engaged))
        return results

    @staticmethod
    def _shown(connection, request_ids: set[str]) -> dict[tuple[str, str], tuple[int, float, str]]:
        if not request_ids:
            return {}
        found = connection.execute(select(slates.c.request_id, slates.c["items"], slates.c.model_tag)
                                   .where(slates.c.request_id.in_(request_ids)))
        return {(rid, item): (position, propensity, tag) for rid, items, tag in found
                for position, (item, _score, propensity) in enumerate(items, start=1)}

    # ------------------------------------------------------------------ reads
    def engagements_after(self, last_id: int) -> list[Engagement]:
        """Engagement events (clicks, carts, purchases, ratings, reviews: not impressions) stored
        after row `last_id`, in row order: (id, user, item, when), `when` the event's time, else
        its arrival: a shopper's history is in `when` order (serving.engaged_items)."""
        with self.engine.connect() as connection:
            rows = connection.execute(
                select(events.c.id, events.c.user, events.c.item, func.coalesce(events.c.at, events.c.received_at))
                .where(events.c.id > last_id, events.c.kind.in_(ENGAGEMENTS)).order_by(events.c.id))
            return [Engagement(int(i), u, item, float(when)) for i, u, item, when in rows]

    def item_counts(self) -> dict[str, tuple[int, int]]:
        """Impressions and clicks per item over all served feedback: item -> (shows, clicks)."""
        with self.engine.connect() as connection:
            rows = connection.execute(select(events.c.item, events.c.kind, func.count())
                                      .where(events.c.kind.in_((IMPRESSION, CLICK))).group_by(events.c.item, events.c.kind))
            counts: dict[str, list[int]] = {}
            for item, kind, n in rows:
                counts.setdefault(item, [0, 0])[kind == CLICK] = n
        return {item: (shows, clicks) for item, (shows, clicks) in counts.items()}

    def events_between(self, since: float, until: float) -> pd.DataFrame:
        """Events that arrived in [since, until), oldest first, with every column but the row id."""
        columns = [c for c in events.c if c.name != "id"]
        query = (select(*columns).where(events.c.received_at >= since, events.c.received_at < until)
                 .order_by(events.c.received_at, events.c.id))
        return self._frame(query, columns)

    def slates_between(self, since: float, until: float) -> pd.DataFrame:
        """Slates served in [since, until), oldest first; `items` as [[item, score, propensity], ...]."""
        self.flush()
        query = (select(*slates.c).where(slates.c.served_at >= since, slates.c.served_at < until)
                 .order_by(slates.c.served_at))
        return self._frame(query, slates.c)

    def newest_shopper_slates(self, n: int) -> pd.DataFrame:
        """The n newest slates served to a known shopper, oldest first (as slates_between)."""
        self.flush()
        query = (select(*slates.c).where(slates.c.user.is_not(None)).order_by(slates.c.served_at.desc()).limit(n))
        return self._frame(query, slates.c).iloc[::-1].reset_index(drop=True)

    def _frame(self, query, columns) -> pd.DataFrame:
        """The query's rows as a frame. Rows become plain tuples first: pandas probes each row for
        array attributes (dtype, ndim, _typ), and a SQLAlchemy row answers each miss by raising inside."""
        with self.engine.connect() as connection:
            rows = [tuple(row) for row in connection.execute(query)]
        return pd.DataFrame(rows, columns=[c.name for c in columns])

    def forget(self, user: str) -> dict[str, int]:
        """Delete every event and served slate of a (pseudonymised) shopper in one transaction: the
        right to erasure. Returns the rows deleted per table. On PostgreSQL the dead rows stay on
        disk until the next VACUUM (autovacuum), as with any delete."""
        self.flush()
        sqlite_file = self.engine.dialect.name == "sqlite"
        with self.engine.begin() as connection:
            if sqlite_file:   # zero the deleted rows' bytes instead of leaving them in free pages
                connection.exec_driver_sql("PRAGMA secure_delete = ON")
            removed = {"events": connection.execute(events.delete().where(events.c.user == user)).rowcount,
                       "slates": connection.execute(slates.delete().where(slates.c.user == user)).rowcount}
        if sqlite_file:   # and the write-ahead log's older copies of those pages
            with self.engine.connect() as connection:
                connection.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
        return removed

    def count(self) -> int:
        with self.engine.connect() as connection:
            return connection.execute(select(func.count()).select_from(events)).scalar_one()

