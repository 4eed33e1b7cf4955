"""The feedback store's tables. Alembic migrations (migrations/versions) create and change them;
a test checks that the migrated database equals this description."""
from __future__ import annotations

from sqlalchemy import JSON, Column, Float, Index, Integer, MetaData, String, Table, Text

metadata = MetaData()
ID_LENGTH = 200   # client event ids, request ids, item ids, session ids
TAG_LENGTH = 200

slates = Table(
    "slates", metadata,
    Column("request_id", String(ID_LENGTH), primary_key=True),
    Column("served_at", Float, nullable=False),
    Column("user", String(64)),                 # pseudonymised; null for anonymous requests
    Column("session_id", String(ID_LENGTH)),
    Column("arm", String(ID_LENGTH), nullable=False),
    Column("model_tag", String(TAG_LENGTH), nullable=False),
    Column("policy", String(40), nullable=False),
    Column("by", String(40), nullable=False),
    Column("items", JSON, nullable=False),       # [[item, score, propensity], ...] in shown order
)

events = Table(
    "events", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("event_id", String(ID_LENGTH), nullable=False, unique=True),
    Column("kind", String(20), nullable=False),
    Column("user", String(64), nullable=False),  # pseudonymised
    Column("item", String(ID_LENGTH), nullable=False),
    Column("request_id", String(ID_LENGTH)),
    Column("position", Integer),                 # where the slate showed the item, if it did
    Column("propensity", Float),                 # with what probability the policy showed it there
    Column("arm", String(ID_LENGTH)),
    Column("model_tag", String(TAG_LENGTH)),
    Column("at", Float),                         # the client's time of the event
    Column("received_at", Float, nullable=False),
    Column("rating", Float),
    Column("text", Text),
    Index("ix_events_user", "user"),
    Index("ix_events_request_id", "request_id"),
    Index("ix_events_item_kind", "item", "kind"),
)
