"""Every shopper's engaged items from served feedback, kept in memory by each worker.

A recommendation for a known shopper adds what they clicked, carted, bought, rated or reviewed
since training. Reading it from the store was one query per request; here a request reads a
dict. The store's newer engagement rows are read every refresh_seconds (what the other workers
stored); the worker's own stored engagements are added at once, so a shopper who just clicked
sees it in the next answer of the worker that took the click (a read per feedback call, under
a lock, was most of that call's time).
"""
from __future__ import annotations

import bisect
import threading
import time

from typing import Iterable

from components.feedback.store import Engagement, FeedbackStore


class EngagedItems:
    def __init__(self, store: FeedbackStore, refresh_seconds: float):
        self.store, self.refresh_seconds = store, refresh_seconds
        self._by_user: dict[str, list[tuple[float, int, str]]] = {}   # user -> (when, row id, item), in order
        self._last_id, self._loaded_at = 0, -float("inf")
        self._added: set[int] = set()   # row ids added by `add` that no read has reached yet
        self._lock = threading.Lock()
        self.refresh()

    def refresh(self) -> None:
        """Read the engagements stored since the last read (waits for another thread's read)."""
        with self._lock:
            self._read()

    def add(self, engagements: Iterable[Engagement]) -> None:
        """This worker's own newly stored engagements, known before the next read."""
        with self._lock:
            for row_id, user, item, when in engagements:
                if row_id > self._last_id and row_id not in self._added:
                    self._added.add(row_id)
                    bisect.insort(self._by_user.setdefault(user, []), (when, row_id, item))

    def _read(self) -> None:
        for row_id, user, item, when in self.store.engagements_after(self._last_id):
            if row_id not in self._added:
                bisect.insort(self._by_user.setdefault(user, []), (when, row_id, item))
            self._last_id = max(self._last_id, row_id)
        self._added = {i for i in self._added if i > self._last_id}
        self._loaded_at = time.monotonic()

    def of(self, user: str) -> list[str]:
        """The shopper's engaged items, oldest first; read anew first when older than
        refresh_seconds, by one request at a time (the others use what is there)."""
        if time.monotonic() - self._loaded_at >= self.refresh_seconds and self._lock.acquire(blocking=False):
            try:
                self._read()
            finally:
                self._lock.release()
        return [item for _, _, item in self._by_user.get(user, ())]

    def forget(self, user: str) -> None:
        with self._lock:
            self._by_user.pop(user, None)
