"""Feedback events as the shop sends them, and which of them say a shopper was interested."""
from __future__ import annotations

from dataclasses import dataclass

IMPRESSION, CLICK, ADD_TO_CART, PURCHASE, RATING, REVIEW = "impression", "click", "add_to_cart", "purchase", "rating", "review"
EVENT_KINDS = (IMPRESSION, CLICK, ADD_TO_CART, PURCHASE, RATING, REVIEW)
# an impression only says the item was shown; every other event says the shopper engaged with it
ENGAGEMENTS = tuple(k for k in EVENT_KINDS if k != IMPRESSION)


@dataclass(frozen=True)
class Event:
    event_id: str          # the client's id: sending an event twice stores it once
    kind: str
    user: str              # pseudonymised shopper id (never the raw one)
    item: str
    request_id: str | None = None   # the recommend answer it reacts to
    at: float | None = None         # when it happened (unix seconds), the client's clock
    rating: float | None = None
    text: str | None = None
    arm: str | None = None
