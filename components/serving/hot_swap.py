"""The production recommender, swapped for a newly promoted version while the service runs.

A background thread polls the promotion record every serving.swap_poll_seconds; a new production
tag is loaded beside the current one and then replaces it in one reference assignment, so a
request that already holds the old recommender finishes on it and the next one gets the new one.

A worker forked from a process that preloaded its versions (components/deployment/prefork.py)
starts from those instead of loading them: their arrays stay in pages the workers share.
"""
from __future__ import annotations

import gc
import logging
import threading

from components.core.config.schema import Params
from components.core.errors import InterestError
from components.registry.promotion import production_tag
from components.serving.recommender import Recommender, catch_up_added, load_recommender

log = logging.getLogger(__name__)
# versions loaded before the workers were forked, by tag (None: production): what a forked
# worker's LiveRecommender starts from. Filled by preload() in the forking process only.
_PRELOADED: dict[str | None, Recommender] = {}


def load_served(params: Params, tag: str | None = None) -> Recommender:
    """A version ready to answer, threads aside: its text encoder loaded (no text request waits
    for it) and its shoppers' best scores kept. Nothing here starts a thread, so a process may
    fork after it."""
    recommender = load_recommender(params, tag)
    recommender.text_encoder()
    recommender.keep_shopper_tops(params.serving.shopper_tops)
    return recommender


def preload(params: Params, tag: str | None) -> Recommender:
    """Load version `tag` (None: production) for the workers this process will fork, in place of
    the one kept under that tag (components/deployment/prefork.py)."""
    _PRELOADED[tag] = load_served(params, tag)
    settle_heap()
    return _PRELOADED[tag]


class LiveRecommender:
    """`.current` is the Recommender to answer with: a pinned tag's, or production's (else the latest)."""

    def __init__(self, params: Params, tag: str | None = None):
        self.params = params
        self.pinned = tag is not None
        preloaded = _PRELOADED.get(tag)
        if preloaded is None:
            self.current: Recommender = self._load(tag)
            settle_heap()
        else:
            self.current = preloaded
            self._start(preloaded)
            freeze_since_fork()
        log.info("now serving %s", self.current.tag)
        self.lock = threading.Lock()    # adding products and swapping never interleave
        self._stop = threading.Event()
        self._watcher: threading.Thread | None = None

    def _load(self, tag: str | None) -> Recommender:
        return self._start(load_served(self.params, tag))

    def _start(self, recommender: Recommender) -> Recommender:
        recommender.start_batching(self.params.serving.batch_max, self.params.serving.batch_wait_ms)
        return recommender

    def start(self) -> "LiveRecommender":
        if not self.pinned:
            self._watcher = threading.Thread(target=self._watch, name="model-watcher", daemon=True)
            self._watcher.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._watcher is not None:
            self._watcher.join()
        self.current.retire()

    def _watch(self) -> None:
        while not self._stop.wait(self.params.serving.swap_poll_seconds):
            try:
                self.swap_if_promoted()
            except (InterestError, OSError) as exc:   # keep serving the current version
                log.error("could not load the newly promoted version: %s", exc)

    def swap_if_promoted(self) -> bool:
        tag = production_tag(self.params)
        if tag is None or tag == self.current.tag:
            return False
        log.info("production is now %s: loading it beside %s", tag, self.current.tag)
        fresh = self._load(tag)
        with self.lock:
            catch_up_added(self.params, fresh)   # products added while it loaded
            old, self.current = self.current, fresh
        old.retire()
        del old
        settle_heap()
        log.info("now serving %s", tag)
        return True


def settle_heap() -> None:
    """Collect, then freeze what is left: a loaded version's half a million objects leave the
    cyclic collector's view. A full collection over them held the GIL for ~280 ms (Beauty),
    stalling every request now and then (max 500 ms at 200 requests/s). Frozen objects are still
    freed by reference counting; collecting first, after each load, frees an old version's cycles."""
    gc.unfreeze()
    gc.collect()
    gc.freeze()


def freeze_since_fork() -> None:
    """In a worker forked after the load: collect, then freeze, what it made since (BentoML's
    app, the store's connections), as settle_heap does after a load. The loaded objects stay
    frozen as the forking process left them: a collection over them would write to every page
    they are on, and each write ends that page's sharing."""
    gc.collect()
    gc.freeze()
