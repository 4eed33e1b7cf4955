"""`kill -9` of a real service process while a client sends feedback: every acknowledged event is
in the store after a restart, and the client's retries store nothing twice."""
from __future__ import annotations

import signal
import sqlite3
import threading

import httpx
import pytest

from components.serving.recommender import load_recommender
from tests.e2e.service_process import post, sample_service_env, start_service

pytestmark = pytest.mark.e2e
TOKEN = "durability-token"
ACKED_BEFORE_KILL = 150


def test_acknowledged_feedback_survives_kill_9_and_retries_store_nothing_twice(served_sample, tmp_path):
    db = tmp_path / "feedback.db"
    env = sample_service_env(served_sample, tmp_path, TOKEN)
    items = load_recommender(served_sample).catalogue["item"].head(50).tolist()
    sent = [{"event_id": f"ev-{n}", "kind": "click", "user": f"shopper-{n % 37}", "item": items[n % len(items)]}
            for n in range(5000)]
    acked: list[str] = []
    tried: list[str] = []
    enough = threading.Event()

    def client(url: str) -> None:
        with httpx.Client(timeout=10) as http:
            for event in sent:
                tried.append(event["event_id"])
                try:
                    r = http.post(f"{url}/feedback", json={"events": [event]}, headers={"authorization": f"Bearer {TOKEN}"})
                except httpx.TransportError:
                    return   # the server is gone: this event is not acknowledged
                if r.status_code == 200:
                    acked.append(event["event_id"])
                if len(acked) >= ACKED_BEFORE_KILL:
                    enough.set()

    first = start_service(env, tmp_path / "first.log")
    sender = threading.Thread(target=client, args=(first.url,))
    sender.start()
    assert enough.wait(120), "the client got no acknowledgements"
    first.stop(signal.SIGKILL)
    sender.join(30)
    assert not sender.is_alive() and len(tried) < len(sent)

    second = start_service(env, tmp_path / "second.log")
    try:
        retried = post(second.url, "feedback", {"events": sent[:len(tried)]}, TOKEN).json()
    finally:
        second.stop()
    with sqlite3.connect(db) as c:
        stored = [r[0] for r in c.execute("SELECT event_id FROM events")]
    assert set(acked) <= set(stored)                                # nothing acknowledged was lost
    assert len(stored) == len(set(stored)) == len(tried)             # every event once, retries included
    assert retried["duplicates"] >= len(acked) and retried["stored"] + retried["duplicates"] == len(tried)
