"""A real BentoML server on localhost (`bentoml serve bento.service:InterestService`) serving the
registered bundle of the 400-shopper sample: it answers as the in-process Recommender does, names
the version that answered, and turns bad requests into 4xx with a message."""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import time

import httpx
import pytest

from components.registry.store import registered, store_home
from components.serving.recommender import load_recommender
from tests.e2e.helpers import BIN, ROOT, clean_env

pytestmark = pytest.mark.e2e
STARTUP_S = 180
TOKEN = "test-token-7c1f"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server(served_sample, tmp_path_factory):
    port, log = free_port(), tmp_path_factory.mktemp("service") / "server.log"
    state = tmp_path_factory.mktemp("service_state")   # added products land here, not in the shared sample
    env = clean_env(INTEREST_PARAMS=str(served_sample.root / "params.yaml"), BENTOML_DO_NOT_TRACK="True",
                    BENTOML_HOME=str(store_home(served_sample)),   # the store the sample was registered in
                    INTEREST__SERVING__ADDED_ITEMS_DIR=str(state / "added_items"), INTEREST_SERVICE_TOKEN=TOKEN)
    with open(log, "w") as out:
        proc = subprocess.Popen([str(BIN / "bentoml"), "serve", "bento.service:InterestService", "--port", str(port),
                                 "--host", "127.0.0.1"], cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + STARTUP_S
        while True:
            try:
                if httpx.get(f"{url}/readyz", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"the service did not become ready:\n{log.read_text()[-3000:]}")
            time.sleep(1)
        yield url
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)


def post(url: str, endpoint: str, body: dict, token: str | None = None) -> httpx.Response:
    headers = {"authorization": f"Bearer {token}"} if token else {}
    return httpx.post(f"{url}/{endpoint}", json=body, headers=headers, timeout=60)


def test_health_and_model_info_name_the_registered_version(server, served_sample):
    assert httpx.get(f"{server}/livez").status_code == 200
    _, metadata = registered(served_sample)
    info = post(server, "model_info", {}).json()
    assert info["model_tag"] == metadata["tag"] and info["served"] == "fusion"
    assert info["test_metrics"] == metadata["test_metrics"]


def test_answers_are_the_in_process_recommenders(server, served_sample):
    recommender = load_recommender(served_sample)
    histories = recommender.bundle.histories().head(40)
    for user, history in histories.itertuples(index=False):
        expected = recommender.recommend(items=list(history), k=10)
        answer = post(server, "recommend", {"items": list(history), "k": 10}).json()
        assert [i["item"] for i in answer["items"]] == expected["item"].tolist()
        assert [i["score"] for i in answer["items"]] == pytest.approx(expected["score"].tolist(), abs=1e-4)
        assert answer["model_tag"] == recommender.tag and answer["by"] == "items"
    by_user = post(server, "recommend", {"user": histories["user"].iloc[0]}).json()
    assert by_user["by"] == "user" and len(by_user["items"]) == served_sample.serving.top_k
    assert len(post(server, "recommend", {"text": "black nail polish", "k": 3}).json()["items"]) == 3
    assert post(server, "recommend", {}).json()["by"] == "popular"
    greedy = post(server, "recommend", {"items": list(history), "k": 5}).json()
    assert greedy["policy"] == "greedy" and {i["propensity"] for i in greedy["items"]} == {1.0}
    explored = post(server, "recommend", {"items": list(history), "k": 5, "policy": "softmax"}).json()
    assert explored["policy"] == "softmax" and all(0 < i["propensity"] <= 1 for i in explored["items"])


@pytest.mark.parametrize("body, status, named", [
    ({"items": ["NO-SUCH-ITEM"]}, 400, "unknown item ids"),
    ({"user": "nobody"}, 400, "unknown shopper"),
    ({"items": ["a"], "text": "b"}, 400, "not items and text"),
    ({"k": 0}, 400, "k"),
    ({"k": "ten"}, 400, "k"),
    ({"items": ["x"] * 5000}, 400, "items"),
    ({"policy": "always-the-same"}, 400, "unknown policy"),
])
def test_bad_requests_get_a_4xx_naming_the_problem(server, body, status, named):
    response = post(server, "recommend", body)
    assert response.status_code == status and named in response.text


def test_invalid_json_is_a_4xx(server):
    response = httpx.post(f"{server}/recommend", content=b"{not json", headers={"content-type": "application/json"})
    assert 400 <= response.status_code < 500


def test_similar_items_of_a_catalogue_item(server, served_sample):
    item = load_recommender(served_sample).catalogue["item"].iloc[0]
    answer = post(server, "similar_items", {"item": item, "k": 5}).json()
    assert len(answer["items"]) == 5 and item not in {i["item"] for i in answer["items"]}
    assert post(server, "similar_items", {"item": "NO-SUCH-ITEM"}).status_code == 400


def test_adding_products_needs_the_token_and_makes_them_known_at_once(server):
    product = {"item": "NEW-UNICORN-1", "title": "aurora borealis glow-in-the-dark unicorn bath bomb"}
    before = post(server, "model_info", {}).json()["catalogue_items"]
    for token in (None, "wrong"):
        refused = post(server, "add_items", {"products": [product]}, token)
        assert refused.status_code == 401 and "Authorization" in refused.text
    assert post(server, "model_info", {}).json()["catalogue_items"] == before   # nothing changed

    added = post(server, "add_items", {"products": [product]}, TOKEN)
    assert added.status_code == 200 and added.json()["added"] == 1
    assert post(server, "model_info", {}).json()["catalogue_items"] == before + 1
    after = post(server, "recommend", {"items": ["NEW-UNICORN-1"], "k": 5})   # a shopper who just viewed it
    assert after.status_code == 200 and "NEW-UNICORN-1" not in {i["item"] for i in after.json()["items"]}
    assert post(server, "similar_items", {"item": "NEW-UNICORN-1", "k": 3}).status_code == 200
    again = post(server, "add_items", {"products": [product]}, TOKEN)
    assert again.status_code == 400 and "already in the catalogue" in again.text
