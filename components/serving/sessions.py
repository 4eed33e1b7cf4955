"""Session consistency: a session sees the same slate for serving.session_ttl_seconds, unless
its shopper sent feedback since (then the slate reflects it at once)."""
from __future__ import annotations

import threading
import time
from typing import Any, Hashable

SWEEP_EVERY = 1024   # puts between sweeps of expired sessions: memory stays bounded by the live ones


class SessionSlates:
    def __init__(self, ttl_seconds: float):
        self.ttl = ttl_seconds
        self._slates: dict[Hashable, tuple[float, str | None, Any]] = {}   # key -> (expires, user, answer)
        self._by_user: dict[str, set[Hashable]] = {}
        self._lock = threading.Lock()
        self._puts = 0

    def get(self, key: Hashable) -> Any | None:
        if self.ttl <= 0:
            return None
        entry = self._slates.get(key)
        if entry is None or entry[0] < time.monotonic():
            return None
        return entry[2]

    def put(self, key: Hashable, user: str | None, answer: Any) -> None:
        if self.ttl <= 0:
            return
        now = time.monotonic()
        with self._lock:
            self._slates[key] = (now + self.ttl, user, answer)
            if user is not None:
                self._by_user.setdefault(user, set()).add(key)
            self._puts += 1
            if self._puts % SWEEP_EVERY == 0:
                self._slates = {k: v for k, v in self._slates.items() if v[0] >= now}
                self._by_user = {u: live for u, keys in self._by_user.items() if (live := keys & self._slates.keys())}

    def forget_user(self, user: str) -> None:
        """The shopper sent feedback: their sessions get fresh slates."""
        with self._lock:
            for key in self._by_user.pop(user, ()):
                self._slates.pop(key, None)
