"""A real BentoML server on localhost (`bentoml serve bento.service:InterestService`) serving the
registered bundle of the 400-shopper sample, with its own feedback store and model store copy:
it answers as the in-process Recommender does and as the evaluation measured, keeps feedback,
swaps a promoted version in while under load, and turns bad requests into 4xx naming the problem."""
from __future__ import annotations

import json
import shutil
import sqlite3
import threading
import time
import uuid
from pathlib import Path

import httpx
import numpy as np
import pytest

from components.core.config.loader import load_params
from components.data.ingest import shop_ids
from components.data.split import load_split
from components.evaluation.metrics import HEADLINE_SUBSET
from components.registry.promotion import promote
from components.registry.store import registered, store_home
from components.serving.recommender import load_recommender
from components.benches.replay import replay
from tests.e2e.service_process import post, start_service
from tests.registry_copies import store_copy

pytestmark = pytest.mark.e2e
TOKEN = "test-token-7c1f"
RAW_SHOPPER = "shop-customer-90210"    # a shopper the service first meets through feedback


@pytest.fixture(scope="module")
def deployment(served_sample, tmp_path_factory):
    """The service's environment: its own copy of the model store (the swap test registers and
    promotes in it), feedback store and added products."""
    state = tmp_path_factory.mktemp("service_state")
    shutil.copytree(store_home(served_sample), state / "store")
    return {"INTEREST_PARAMS": str(served_sample.root / "params.yaml"), "BENTOML_HOME": str(state / "store"),
            "INTEREST__SERVING__ADDED_ITEMS_DIR": str(state / "added_items"),
            "INTEREST__SERVING__STORE_URL": f"sqlite:///{state / 'feedback.db'}",
            "INTEREST__PRIVACY__ERASURE_DIR": str(state / "erasures"),
            "INTEREST__SERVING__SESSION_TTL_SECONDS": "600", "INTEREST__SERVING__SWAP_POLL_SECONDS": "0.5",
            "INTEREST_SERVICE_TOKEN": TOKEN}


@pytest.fixture(scope="module")
def server(deployment, tmp_path_factory):
    service = start_service(deployment, tmp_path_factory.mktemp("service") / "server.log")
    yield service
    service.stop()


@pytest.fixture(scope="module")
def url(server) -> str:
    return server.url


@pytest.fixture(scope="module")
def known_raw_shopper(served_sample) -> tuple[str, list[str]]:
    """A shop id of a shopper in the training data, with their history (the bundle holds only pseudonyms)."""
    histories = load_recommender(served_sample).bundle.histories()
    known = dict(zip(histories["user"], histories["history"]))
    for raw, p in shop_ids(served_sample, set(known), environ={}).items():
        return raw, list(known[p])
    pytest.fail("no raw shopper of the sample is in the bundle")


def test_health_and_model_info_name_the_registered_version(url, served_sample):
    assert httpx.get(f"{url}/livez").status_code == 200
    _, metadata = registered(served_sample)
    info = post(url, "model_info", {}).json()
    assert info["model_tag"] == metadata["tag"] and info["served"] == "fusion"
    assert info["test_metrics"] == metadata["test_metrics"]
    assert info["arms"] == [{"name": "control", "share": 1.0, "model_tag": metadata["tag"], "policy": "greedy"}]


def test_answers_are_the_in_process_recommenders(url, served_sample):
    recommender = load_recommender(served_sample)
    histories = recommender.bundle.histories().head(40)
    for history in histories["history"]:
        expected = recommender.recommend(items=list(history), k=10)
        answer = post(url, "recommend", {"items": list(history), "k": 10}).json()
        assert [i["item"] for i in answer["items"]] == expected["item"].tolist()
        assert [i["score"] for i in answer["items"]] == pytest.approx(expected["score"].tolist(), abs=1e-4)
        assert answer["model_tag"] == recommender.tag and answer["by"] == "items" and answer["arm"] == "control"
    assert len(post(url, "recommend", {"text": "black nail polish", "k": 3}).json()["items"]) == 3
    assert post(url, "recommend", {}).json()["by"] == "popular"
    greedy = post(url, "recommend", {"items": list(history), "k": 5}).json()
    assert greedy["policy"] == "greedy" and {i["propensity"] for i in greedy["items"]} == {1.0}
    explored = post(url, "recommend", {"items": list(history), "k": 5, "policy": "softmax"}).json()
    assert explored["policy"] == "softmax" and all(0 < i["propensity"] <= 1 for i in explored["items"])


def test_a_known_shopper_is_recommended_by_the_shops_own_id(url, known_raw_shopper):
    raw, history = known_raw_shopper
    answer = post(url, "recommend", {"user": raw, "k": 10}).json()
    assert answer["by"] == "user" and len(answer["items"]) == 10
    assert not {i["item"] for i in answer["items"]} & set(history)   # history hidden by default
    shown = post(url, "recommend", {"user": raw, "k": 10, "hide_history": False}).json()
    assert shown["items"] == post(url, "recommend", {"items": history, "k": 10, "hide_history": False}).json()["items"]


def test_offline_equals_online_on_every_test_case(url, served_sample):
    """Every test case of the sample, replayed over HTTP, gives the NDCG@10 the evaluation reports
    for the served recommender (and so the registry records)."""
    test = load_split(served_sample).cases_as_ids(HEADLINE_SUBSET)
    ndcg = replay(url, list(test["history"]), list(test["target"]), 10)
    _, metadata = registered(served_sample)
    assert len(ndcg) == len(test) > 300
    assert ndcg.mean() == pytest.approx(metadata["test_metrics"]["ndcg@10"], abs=0.001)


def events(n: int, item: str, request_id: str | None = None, user: str = RAW_SHOPPER) -> list[dict]:
    return [{"event_id": uuid.uuid4().hex, "kind": "click", "user": user, "item": item, "request_id": request_id}
            for _ in range(n)]


def test_feedback_is_stored_once_with_its_propensity_and_shapes_the_next_answer(url, server, deployment):
    first = post(url, "recommend", {"items": [], "k": 5, "policy": "softmax", "session_id": "s-1"}).json()
    item = first["items"][2]["item"]
    batch = [{"event_id": "imp-1", "kind": "impression", "user": RAW_SHOPPER, "item": item,
              "request_id": first["request_id"]}, *events(1, item, first["request_id"])]
    for token in (None, "wrong"):
        refused = post(url, "feedback", {"events": batch}, token)
        assert refused.status_code == 401 and "Authorization" in refused.text
    assert post(url, "feedback", {"events": batch}, TOKEN).json() == {"stored": 2, "duplicates": 0}
    assert post(url, "feedback", {"events": batch}, TOKEN).json() == {"stored": 0, "duplicates": 2}

    answer = post(url, "recommend", {"user": RAW_SHOPPER, "k": 10}).json()   # known through feedback alone
    assert answer["by"] == "user" and item not in {i["item"] for i in answer["items"]}
    with sqlite3.connect(deployment["INTEREST__SERVING__STORE_URL"].removeprefix("sqlite:///")) as db:
        stored = db.execute("SELECT kind, user, position, propensity, model_tag FROM events "
                            "WHERE event_id = 'imp-1'").fetchone()
        users = {r[0] for r in db.execute("SELECT user FROM events")}
    assert stored[0] == "impression" and stored[2] == 3
    assert stored[3] == pytest.approx(first["items"][2]["propensity"], abs=1e-6) and stored[4] == first["model_tag"]
    assert RAW_SHOPPER not in users and len(next(iter(users))) == 16      # pseudonymised
    log = server.log.read_text()
    assert RAW_SHOPPER not in log and TOKEN not in log


def test_a_session_sees_the_same_slate_until_its_shopper_sends_feedback(url):
    body = {"user": RAW_SHOPPER, "k": 5, "policy": "softmax", "session_id": "s-2"}
    first, again = post(url, "recommend", body).json(), post(url, "recommend", body).json()
    assert again["from_session"] and again["items"] == first["items"] and again["request_id"] != first["request_id"]
    assert post(url, "feedback", {"events": events(1, first["items"][0]["item"])}, TOKEN).status_code == 200
    fresh = post(url, "recommend", body).json()
    assert not fresh["from_session"] and first["items"][0]["item"] not in {i["item"] for i in fresh["items"]}


@pytest.mark.parametrize("endpoint, body, named", [
    ("recommend", {"items": ["NO-SUCH-ITEM"]}, "unknown item ids"),
    ("recommend", {"user": ""}, "user"),
    ("recommend", {"items": ["a"], "text": "b"}, "not items and text"),
    ("recommend", {"k": 0}, "k"),
    ("recommend", {"k": 10 ** 9}, "k"),
    ("recommend", {"k": "ten"}, "k"),
    ("recommend", {"items": []}, None),
    ("recommend", {"items": ["x"] * 10_000}, "items"),
    ("recommend", {"exclude": "not-a-list"}, "exclude"),
    ("recommend", {"text": "x" * 1_000_000}, None),           # 1 MB: over the body limit or the text limit
    ("recommend", {"policy": "always-the-same"}, "policy"),
    ("similar_items", {"item": "NO-SUCH-ITEM"}, "unknown item ids"),
    ("feedback", {"events": []}, "events"),
    ("feedback", {"events": [{"event_id": "x", "kind": "stare", "user": "u", "item": "i"}]}, "kind"),
    ("feedback", {"events": [{"event_id": "x", "kind": "click", "user": "u", "item": "NO-SUCH-ITEM"}]}, "unknown item ids"),
])
def test_bad_requests_get_a_4xx_naming_the_problem(url, endpoint, body, named):
    response = post(url, endpoint, body, TOKEN)
    if body == {"items": []}:   # an empty history is no history: the popular default
        assert response.status_code == 200 and response.json()["by"] == "popular"
        return
    assert 400 <= response.status_code < 500
    assert named is None or named in response.text


def test_invalid_json_wrong_content_type_and_huge_bodies_are_4xx(url):
    assert 400 <= httpx.post(f"{url}/recommend", content=b"{not json",
                             headers={"content-type": "application/json"}).status_code < 500
    assert 400 <= httpx.post(f"{url}/recommend", content=b"k=3",
                             headers={"content-type": "application/x-www-form-urlencoded"}).status_code < 500
    big = httpx.post(f"{url}/recommend", content=b'{"text": "' + b"x" * 3_000_000 + b'"}',
                     headers={"content-type": "application/json"})
    assert big.status_code == 413 and "max_body_bytes" in big.text


def test_similar_items_of_a_catalogue_item(url, served_sample):
    item = load_recommender(served_sample).catalogue["item"].iloc[0]
    answer = post(url, "similar_items", {"item": item, "k": 5}).json()
    assert len(answer["items"]) == 5 and item not in {i["item"] for i in answer["items"]}


def test_adding_products_needs_the_token_and_makes_them_known_at_once(url):
    product = {"item": "NEW-UNICORN-1", "title": "aurora borealis glow-in-the-dark unicorn bath bomb"}
    before = post(url, "model_info", {}).json()["catalogue_items"]
    for token in (None, "wrong"):
        refused = post(url, "add_items", {"products": [product]}, token)
        assert refused.status_code == 401 and "Authorization" in refused.text
    assert post(url, "model_info", {}).json()["catalogue_items"] == before   # nothing changed

    added = post(url, "add_items", {"products": [product]}, TOKEN)
    assert added.status_code == 200 and added.json()["added"] == 1
    assert post(url, "model_info", {}).json()["catalogue_items"] == before + 1
    after = post(url, "recommend", {"items": ["NEW-UNICORN-1"], "k": 5})   # a shopper who just viewed it
    assert after.status_code == 200 and "NEW-UNICORN-1" not in {i["item"] for i in after.json()["items"]}
    assert post(url, "similar_items", {"item": "NEW-UNICORN-1", "k": 3}).status_code == 200
    assert post(url, "feedback", {"events": events(1, "NEW-UNICORN-1")}, TOKEN).status_code == 200
    again = post(url, "add_items", {"products": [product]}, TOKEN)
    assert again.status_code == 400 and "already in the catalogue" in again.text


def test_a_forgotten_shopper_leaves_the_store_and_is_served_as_anonymous(url, served_sample, deployment):
    histories = load_recommender(served_sample).bundle.histories()
    raw, who = list(shop_ids(served_sample, set(histories["user"]), environ={}).items())[1]   # not known_raw_shopper
    answer = post(url, "recommend", {"user": raw, "k": 5}).json()
    assert answer["by"] == "user"
    assert post(url, "feedback", {"events": events(2, answer["items"][0]["item"], answer["request_id"], raw)},
                TOKEN).status_code == 200
    refused = post(url, "forget_user", {"user": raw})
    assert refused.status_code == 401 and "Authorization" in refused.text
    erased = post(url, "forget_user", {"user": raw}, TOKEN).json()
    assert erased["shopper"] == who and erased["removed"] == {"feedback_store": {"events": 2, "slates": 1}}
    assert post(url, "recommend", {"user": raw, "k": 5}).json()["by"] != "user"   # their history is not used
    time.sleep(1)   # the slate log's flush
    with sqlite3.connect(deployment["INTEREST__SERVING__STORE_URL"].removeprefix("sqlite:///")) as db:
        rows = db.execute("SELECT (SELECT count(*) FROM events WHERE user = ?) + "
                          "(SELECT count(*) FROM slates WHERE user = ?)", (who, who)).fetchone()[0]
    assert rows == 0
    register = json.loads((Path(deployment["INTEREST__PRIVACY__ERASURE_DIR"]) / "register.json").read_text())
    assert [e["shopper"] for e in register] == [who] and raw not in json.dumps(register)


def test_a_promoted_version_is_swapped_in_under_load_without_a_failed_request(url, served_sample, deployment,
                                                                               monkeypatch, tmp_path):
    """Runs last in this module: the service ends on the new version."""
    monkeypatch.setenv("BENTOML_HOME", deployment["BENTOML_HOME"])   # the service's store, not the sample's
    params = load_params(served_sample.root / "params.yaml",
                         environ={"INTEREST__REGISTRY__RECORD_FILE": str(tmp_path / "registered.json")})
    old = post(url, "model_info", {}).json()["model_tag"]
    new = store_copy(params, old)
    tags, failures, stop = [], [], threading.Event()

    def load() -> None:
        with httpx.Client(timeout=30) as client:
            while not stop.is_set():
                r = client.post(f"{url}/recommend", json={"text": "rose scented hand cream", "k": 10})
                (tags.append(r.json()["model_tag"]) if r.status_code == 200 else failures.append(r.status_code))

    workers = [threading.Thread(target=load) for _ in range(4)]
    for w in workers:
        w.start()
    time.sleep(1.0)
    promote(params, new)
    deadline = time.monotonic() + 60
    while (not tags or tags[-1] != new) and time.monotonic() < deadline:
        time.sleep(0.2)
    time.sleep(1.0)
    stop.set()
    for w in workers:
        w.join()
    assert failures == []
    assert tags[0] == old and tags[-1] == new
    switched = tags.index(new)
    assert set(tags[switched:]) <= {new, old} and tags.count(old) + tags.count(new) == len(tags)
    info = post(url, "model_info", {}).json()
    assert info["model_tag"] == new and info["catalogue_items"] > 0
    assert post(url, "recommend", {"items": ["NEW-UNICORN-1"], "k": 3}).status_code == 200   # added products kept
    assert np.isfinite([i["score"] for i in post(url, "recommend", {"k": 3}).json()["items"]]).all()
