"""Load for `make bench-serve` (components/serving/load_bench.py runs it headless): every simulated
client sends one request a second, so the number of clients is the request rate.

INTEREST_BENCH_ENDPOINT picks what is measured: `recommend` by a known shopper's shop id, or
`feedback` (one click event, a fresh event_id each time). Shop ids and item ids come from files
the bench writes (one per line).
"""
import os
import random
import uuid

from locust import FastHttpUser, constant_throughput, task

ENDPOINT = os.environ["INTEREST_BENCH_ENDPOINT"]
with open(os.environ["INTEREST_BENCH_USERS_FILE"]) as fh:
    USERS = fh.read().split()
with open(os.environ["INTEREST_BENCH_ITEMS_FILE"]) as fh:
    ITEMS = fh.read().split()
HEADERS = {"authorization": f"Bearer {os.environ['INTEREST_SERVICE_TOKEN']}"}


class Shop(FastHttpUser):
    wait_time = constant_throughput(1.0)

    @task
    def call(self) -> None:
        user = random.choice(USERS)
        if ENDPOINT == "recommend":
            self.client.post("/recommend", json={"user": user, "k": 10}, name="recommend")
        else:
            event = {"event_id": uuid.uuid4().hex, "kind": "click", "user": user, "item": random.choice(ITEMS)}
            self.client.post("/feedback", json={"events": [event]}, headers=HEADERS, name="feedback")
