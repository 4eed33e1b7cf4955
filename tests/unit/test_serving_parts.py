"""A/B arm assignment, the personalisation blend, session slates, the request guard and the
adaptive batcher."""
from __future__ import annotations

import asyncio
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pandas as pd
import pytest

from components.core.config.schema import ArmParams
from components.serving.arms import assign_arm
from components.serving.micro_batcher import MicroBatcher
from components.serving.request_guard import RequestGuard
from components.serving.consistency import blend_with_popularity, personal_weight, segment_log_popularity
from components.serving.sessions import SessionSlates


def test_arms_are_stable_per_shopper_and_split_traffic_by_share():
    arms = (ArmParams(name="a", share=0.2), ArmParams(name="b", share=0.8, policy="softmax"))
    keys = [f"user-{i}" for i in range(20_000)]
    first = [assign_arm(k, arms).name for k in keys]
    assert first == [assign_arm(k, arms).name for k in keys]
    assert first.count("a") / len(keys) == pytest.approx(0.2, abs=0.015)


def test_full_personalisation_keeps_the_ranking_and_none_is_popularity():
    rng = np.random.default_rng(0)
    scores, popularity = rng.normal(size=50), np.log1p(rng.integers(0, 100, size=50).astype(float))
    scores[3] = -np.inf
    assert np.array_equal(np.argsort(-blend_with_popularity(scores, popularity, 1.0))[:49], np.argsort(-scores)[:49])
    blended = blend_with_popularity(scores, popularity, 0.0)
    finite = np.isfinite(blended)
    assert not finite[3] and np.array_equal(np.argsort(-blended[finite], kind="stable"),
                                            np.argsort(-popularity[finite], kind="stable"))


def test_a_segments_popularity_leads_and_everyones_orders_what_it_leaves_out():
    counts = np.array([0, 50, 40, 30, 20, 10])                  # everyone's, by item_idx (0: padding)
    table = pd.DataFrame({"segment": [0, 0, 1], "item": ["e", "d", "b"], "shoppers": [12.0, 11.0, 40.0]})
    index = {name: idx for idx, name in enumerate("_abcde")}
    by_segment = segment_log_popularity(table, index, counts, prior=10.0)
    assert set(by_segment) == {0, 1}                            # a segment with no rows falls back to everyone's
    assert list(np.argsort(-by_segment[0])[:5]) == [5, 4, 1, 2, 3]   # its own items, then everyone's order
    assert list(np.argsort(-by_segment[1])[:2]) == [2, 1]
    weak = segment_log_popularity(table, index, counts, prior=1e6)   # a strong prior: everyone's popularity
    assert list(np.argsort(-weak[0])[:5]) == [1, 2, 3, 4, 5]


def test_thin_histories_lean_toward_popularity():
    assert personal_weight(0.8, 2, 0) == 0.8
    assert personal_weight(0.8, 2, 8) == pytest.approx(0.2)
    assert personal_weight(0.8, 20, 8) == 0.8


def test_a_session_keeps_its_slate_until_ttl_or_feedback():
    sessions = SessionSlates(ttl_seconds=0.3)
    sessions.put("s1", "u1", "slate-1")
    sessions.put("s2", "u2", "slate-2")
    assert sessions.get("s1") == "slate-1"
    sessions.forget_user("u1")
    assert sessions.get("s1") is None and sessions.get("s2") == "slate-2"
    time.sleep(0.35)
    assert sessions.get("s2") is None
    off = SessionSlates(ttl_seconds=0)
    off.put("s", "u", "x")
    assert off.get("s") is None


def _call(limit: int, body: bytes, length: bool, content_type: bytes = b"application/json") -> tuple[int, bool]:
    reached = []

    async def app(scope, receive, send):
        while (message := await receive()).get("more_body"):
            pass
        reached.append(True)
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})

    chunks = [body[i:i + 1000] for i in range(0, len(body), 1000)] or [b""]
    messages = [{"type": "http.request", "body": c, "more_body": i < len(chunks) - 1} for i, c in enumerate(chunks)]
    sent = []

    async def receive():
        return messages.pop(0)

    async def send(message):
        sent.append(message)

    headers = [(b"content-type", content_type)] + ([(b"content-length", str(len(body)).encode())] if length else [])
    asyncio.run(RequestGuard(app, limit)({"type": "http", "method": "POST", "headers": headers}, receive, send))
    return sent[0]["status"], bool(reached)


@pytest.mark.parametrize("length", [True, False])
def test_bodies_over_the_limit_get_413_before_the_app_sees_them(length):
    assert _call(5000, b"x" * 4000, length) == (200, True)
    assert _call(5000, b"x" * 6000, length) == (413, False)


def test_bodies_that_are_not_json_get_415():
    assert _call(5000, b"k=3", True, b"application/x-www-form-urlencoded") == (415, False)
    assert _call(5000, b"{}", True, b"application/json; charset=utf-8") == (200, True)


def test_batcher_scores_an_idle_request_at_once_and_concurrent_ones_together():
    calls: list[tuple[int, str]] = []

    def score(histories):
        calls.append((len(histories), threading.current_thread().name))
        time.sleep(0.02)   # long enough for others to queue behind it
        return np.array([[float(sum(h))] for h in histories])

    batcher = MicroBatcher(score, max_batch=8, max_wait_ms=5)
    try:
        assert batcher.score([1, 2])[0] == 3.0 and calls == [(1, threading.current_thread().name)]
        with ThreadPoolExecutor(16) as pool:
            rows = list(pool.map(lambda n: batcher.score([n, 1])[0], range(32)))
    finally:
        batcher.retire()
    assert rows == [n + 1.0 for n in range(32)]                  # every request gets its own row
    assert max(size for size, _ in calls) > 1 and len(calls) < 32  # and some were scored together
