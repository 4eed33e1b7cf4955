"""Impressions and clicks per item from the feedback store: the evidence of the Thompson policy,
reloaded every serving.feedback_counts_seconds (a request never waits for a count over the
whole store)."""
from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field

from components.feedback.store import FeedbackStore


@dataclass(frozen=True)
class ItemFeedback:
    counts: dict[str, tuple[int, int]] = field(default_factory=dict)   # item id -> (shows, clicks)
    version: int = 0                                                     # changes with every reload


class ItemFeedbackCounts:
    def __init__(self, store: FeedbackStore, refresh_seconds: float):
        self.store, self.refresh_seconds = store, refresh_seconds
        self._current, self._loaded_at = ItemFeedback(), -float("inf")
        self._lock = threading.Lock()

    def current(self) -> ItemFeedback:
        """The counts, reloaded first when older than refresh_seconds (by one request at a time)."""
        if time.monotonic() - self._loaded_at >= self.refresh_seconds and self._lock.acquire(blocking=False):
            try:
                self._current = ItemFeedback(self.store.item_counts(), self._current.version + 1)
                self._loaded_at = time.monotonic()
            finally:
                self._lock.release()
        return self._current
