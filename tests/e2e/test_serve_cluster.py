"""`interest serve` with two workers on the registered sample: HAProxy spreads requests (not
connections) over both, they share one real PostgreSQL store, and `kill -9` of a worker under
feedback load loses no acknowledged event and stores none twice when the client retries; the
balancer routes around the dead worker and the launcher forks it again."""
from __future__ import annotations

import os
import shutil
import signal
import threading
import time

import httpx
import pytest
from sqlalchemy import create_engine, func, select

from components.core.config.loader import load_params
from components.core.errors import InterestError
from components.core.ports import free_port
from components.deployment.serve import start_cluster, start_launcher
from components.feedback.schema import events
from components.registry.promotion import promote
from components.registry.store import store_home
from components.serving.recommender import load_recommender
from tests.e2e.helpers import clean_env
from tests.registry_copies import store_copy

pytestmark = pytest.mark.e2e
TOKEN = "cluster-token"
EVENTS = 400
KILL_AFTER = 100    # acknowledged events before one worker is killed
RETRIES = 50
SESSION_TTL = 60
SWAP_POLL = 0.5
SWAP_DEADLINE = 90   # seconds for both workers to load the promoted version (its shoppers' best scores too)


@pytest.fixture
def cluster(served_sample, tmp_path):
    sessions = {"INTEREST__SERVING__SESSION_TTL_SECONDS": str(SESSION_TTL),
                "INTEREST__SERVING__ACCESS_LOG": "true"}   # each worker's log counts the requests it answered
    env = clean_env(BENTOML_HOME=str(store_home(served_sample)), INTEREST_SERVICE_TOKEN=TOKEN,
                    INTEREST__SERVING__ADDED_ITEMS_DIR=str(tmp_path / "added"), **sessions)
    params = load_params(served_sample.root / "params.yaml", environ=sessions)
    started = start_cluster(params, port=0, workers=2, env=env, folder=tmp_path / "cluster")
    yield started
    started.stop()


def _requests_seen(cluster) -> list[int]:
    return [(cluster.folder / f"worker{i}.log").read_text().count("/recommend") for i in range(len(cluster.worker_urls))]


def test_requests_of_one_keep_alive_client_reach_both_workers(cluster, served_sample):
    shopper = load_recommender(served_sample).catalogue["item"].head(3).tolist()
    with httpx.Client(timeout=30) as client:          # one connection to the balancer
        answers = [client.post(f"{cluster.url}/recommend", json={"items": shopper, "k": 5}) for _ in range(40)]
    assert all(a.status_code == 200 for a in answers)
    assert len({tuple(i["item"] for i in a.json()["items"]) for a in answers}) == 1   # the same list from either
    assert all(seen >= 5 for seen in _requests_seen(cluster)), _requests_seen(cluster)


def test_a_session_keeps_its_slate_whichever_connection_asks(cluster, served_sample):
    """The slates live in a worker's memory: the balancer sends a session where its slate is."""
    history = load_recommender(served_sample).catalogue["item"].head(4).tolist()
    body = {"items": history, "k": 5, "policy": "softmax", "session_id": "s-1"}   # a random draw each time
    answers = []
    for _ in range(12):
        with httpx.Client(timeout=30) as client:         # a new connection each time
            answers.append(client.post(f"{cluster.url}/recommend", json=body).json())
    assert not answers[0]["from_session"] and all(a["from_session"] for a in answers[1:])
    assert len({tuple(i["item"] for i in a["items"]) for a in answers}) == 1


def test_kill_9_of_a_worker_under_feedback_load_loses_nothing_and_stores_nothing_twice(cluster, served_sample):
    items = load_recommender(served_sample).catalogue["item"].head(50).tolist()
    sent = [{"event_id": f"ev-{n}", "kind": "click", "user": f"shopper-{n % 37}", "item": items[n % len(items)]}
            for n in range(EVENTS)]
    acked, failures = [], []
    enough = threading.Event()

    def client() -> None:
        with httpx.Client(timeout=10, headers={"authorization": f"Bearer {TOKEN}"}) as http:
            for event in sent:
                for _ in range(RETRIES):          # the client resends until acknowledged, the same event_id
                    try:
                        if http.post(f"{cluster.url}/feedback", json={"events": [event]}).status_code == 200:
                            acked.append(event["event_id"])
                            break
                    except httpx.TransportError:
                        pass
                    failures.append(event["event_id"])
                if len(acked) >= KILL_AFTER:
                    enough.set()

    sender = threading.Thread(target=client)
    sender.start()
    assert enough.wait(120), "the client got no acknowledgements"
    killed = cluster.worker_pids()[0]
    os.kill(killed, signal.SIGKILL)
    sender.join(300)
    assert not sender.is_alive() and acked == [e["event_id"] for e in sent]    # every event acknowledged
    assert cluster.restarts == 1 and cluster.worker_pids()[0] != killed      # forked again by the launcher
    assert httpx.get(f"{cluster.worker_urls[0]}/readyz", timeout=30).status_code == 200
    engine = create_engine(cluster.env["INTEREST__SERVING__STORE_URL"])
    try:
        with engine.connect() as connection:
            stored = connection.execute(select(func.count(), func.count(events.c.event_id.distinct())).select_from(events)).one()
    finally:
        engine.dispose()
    assert tuple(stored) == (EVENTS, EVENTS)        # each once, the retries included
    with httpx.Client(timeout=30) as http:          # the restarted worker serves again, behind the balancer
        answers = [http.post(f"{cluster.url}/recommend", json={"items": items[:2], "k": 5}) for _ in range(20)]
    assert all(a.status_code == 200 for a in answers)


def test_a_promotion_reaches_every_worker_under_load_without_a_failed_request(served_sample, tmp_path, monkeypatch):
    """Both workers swap to the promoted version while four clients keep asking through the
    balancer; no request fails, each answer names the version that made it, and once both
    workers say they serve the new version no answer comes from the old one."""
    home = tmp_path / "store"                          # a copy: promoting here leaves the sample's store alone
    shutil.copytree(store_home(served_sample), home)
    monkeypatch.setenv("BENTOML_HOME", str(home))
    settings = {"INTEREST__SERVING__SWAP_POLL_SECONDS": str(SWAP_POLL)}
    env = clean_env(BENTOML_HOME=str(home), INTEREST_SERVICE_TOKEN=TOKEN,
                    INTEREST__SERVING__ADDED_ITEMS_DIR=str(tmp_path / "added"), **settings)
    params = load_params(served_sample.root / "params.yaml", environ=settings)
    history = load_recommender(served_sample).catalogue["item"].head(3).tolist()
    cluster = start_cluster(params, port=0, workers=2, env=env, folder=tmp_path / "cluster")
    answers, failures, stop = [], [], threading.Event()

    def ask() -> None:
        with httpx.Client(timeout=30) as client:
            while not stop.is_set():
                r = client.post(f"{cluster.url}/recommend", json={"items": history, "k": 5})
                (answers.append((time.monotonic(), r.json()["model_tag"])) if r.status_code == 200
                 else failures.append(r.status_code))

    def swapped() -> list[bool]:
        return [f"now serving {new}" in (cluster.folder / f"worker{i}.log").read_text() for i in range(2)]
    try:
        old = httpx.post(f"{cluster.url}/model_info", json={}, timeout=30).json()["model_tag"]
        new = store_copy(params, old)
        clients = [threading.Thread(target=ask) for _ in range(4)]
        for c in clients:
            c.start()
        time.sleep(1.0)
        promote(params, new)
        deadline = time.monotonic() + SWAP_DEADLINE
        while not all(swapped()) and time.monotonic() < deadline:
            time.sleep(0.2)
        both_at = time.monotonic()
        time.sleep(2.0)
        stop.set()
        for c in clients:
            c.join()
        assert all(swapped()), swapped()
    finally:
        stop.set()
        cluster.stop()
    assert failures == [] and answers
    assert answers[0][1] == old and {tag for _, tag in answers} == {old, new}
    assert {tag for at, tag in answers if at > both_at} == {new}


def test_a_worker_that_cannot_start_stops_the_launcher_with_its_log_named(served_sample, tmp_path):
    """No feedback store answers: each forked worker fails at its start; the launcher stops after
    the second try instead of forking it forever, and the error names the worker's log."""
    env = clean_env(BENTOML_HOME=str(store_home(served_sample)), INTEREST_PARAMS=str(served_sample.root / "params.yaml"),
                    INTEREST__SERVING__STORE_URL=f"postgresql+psycopg://nobody@127.0.0.1:{free_port()}/none")
    started = time.monotonic()
    with pytest.raises(InterestError, match="worker0.log"):
        start_launcher(env, [free_port()], tmp_path, startup_seconds=120)
    assert time.monotonic() - started < 60
    assert "twice running" in (tmp_path / "prefork.log").read_text()
