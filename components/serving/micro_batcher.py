"""Adaptive batching of concurrent requests: one catalogue scoring for many shoppers.

Scoring one history is dominated by fixed costs (the model's forward pass, a product with the
whole catalogue per scorer); scoring 32 at once costs little more than one. A request hands its
history to the batcher and waits; a worker thread takes whatever has queued (up to max_batch,
waiting at most max_wait_ms for company once the first arrives), scores the batch in one call
and hands every request its row. A request that finds nothing queued and no batch being scored
scores itself at once, in its own thread: under light load batching costs nothing.
"""
from __future__ import annotations

import logging
import queue
import threading
import time
from concurrent.futures import Future
from typing import Callable, Sequence

import numpy as np

log = logging.getLogger(__name__)
IDLE_CHECK_SECONDS = 1.0   # how often an idle worker looks whether it was retired


class MicroBatcher:
    def __init__(self, score: Callable[[Sequence[Sequence[int]]], np.ndarray], max_batch: int, max_wait_ms: float):
        self._score, self.max_batch, self.max_wait = score, max_batch, max_wait_ms / 1000
        self._queue: queue.Queue[tuple[Sequence[int], Future]] = queue.Queue()
        self._retired = threading.Event()
        self._scoring = threading.Lock()   # one scoring pass at a time: a batch, or one idle request
        self._worker = threading.Thread(target=self._work, name="score-batcher", daemon=True)
        self._worker.start()

    def score(self, history: Sequence[int]) -> np.ndarray:
        """The scores of one history, computed in a batch with whatever else is waiting."""
        if self._retired.is_set():
            return self._score([history])[0]
        if self._queue.empty() and self._scoring.acquire(blocking=False):
            try:   # nobody to batch with
                return self._score([history])[0]
            finally:
                self._scoring.release()
        future: Future = Future()
        self._queue.put((history, future))
        return future.result()

    def retire(self) -> None:
        """No new requests (the recommender was swapped out); the queued ones are still answered."""
        self._retired.set()

    def _work(self) -> None:
        while True:
            try:
                first = self._queue.get(timeout=IDLE_CHECK_SECONDS)
            except queue.Empty:
                if self._retired.is_set():
                    return
                continue
            batch = [first]
            deadline = time.monotonic() + self.max_wait
            while len(batch) < self.max_batch:
                remaining = deadline - time.monotonic()
                try:
                    batch.append(self._queue.get(timeout=remaining) if remaining > 0 else self._queue.get_nowait())
                except queue.Empty:
                    break
            try:
                with self._scoring:
                    rows = self._score([history for history, _ in batch])
                for (_, future), row in zip(batch, rows):
                    future.set_result(row)
            except Exception as exc:   # every waiting request gets the error, none hangs
                log.exception("scoring a batch of %d failed", len(batch))
                for _, future in batch:
                    future.set_exception(exc)
