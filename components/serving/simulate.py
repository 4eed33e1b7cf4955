"""`interest simulate`: held-out shoppers of the data as a shop's traffic against the running service.

Each simulated shopper is a test case of the newest split, known to the service by its raw shop
id. It asks `recommend`, is shown the slate (an impression event for every item), and clicks the
item it really went on to engage with if the slate shows it (probability simulate.click_relevant),
buying it after the click with simulate.purchase_after_click; otherwise it clicks one of the shown
items only now and then (simulate.click_other). Its events go back through `feedback` with the
slate's request id, so the store holds what a shop's front end would have sent.
"""
from __future__ import annotations

import logging
import uuid
from concurrent.futures import ThreadPoolExecutor

import httpx
import numpy as np
import pandas as pd
from tqdm import tqdm

from components.core.config import Params
from components.core.errors import InterestError
from components.data.ingest import shop_ids
from components.data.split import load_split
from components.evaluation.metrics import HEADLINE_SUBSET
from components.feedback.events import CLICK, IMPRESSION, PURCHASE

log = logging.getLogger(__name__)


def held_out_shoppers(params: Params, n: int) -> pd.DataFrame:
    """n test cases (seeded sample; 0 = all) with the shopper's raw shop id and the target's item id."""
    test = load_split(params).cases_as_ids(HEADLINE_SUBSET)
    raw = {p: r for r, p in shop_ids(params, set(test["user"])).items()}
    test = test[test["user"].isin(raw)]
    test = test.sample(min(n, len(test)), random_state=params.simulate.seed) if n else test
    return pd.DataFrame({"shop_id": test["user"].map(raw).to_numpy(), "target": test["target"].to_numpy()})


def _post(client: httpx.Client, url: str, endpoint: str, body: dict, headers: dict | None = None) -> dict:
    response = client.post(f"{url}/{endpoint}", json=body, headers=headers or {})
    if response.status_code != 200:
        raise InterestError(f"simulate: {endpoint} answered {response.status_code}: {response.text[:300]}")
    return response.json()


def simulate(params: Params, url: str, token: str, shoppers: int | None = None) -> dict:
    cfg = params.simulate
    cases = held_out_shoppers(params, cfg.shoppers if shoppers is None else shoppers)
    run = uuid.uuid4().hex[:8]   # event ids stay unique across runs
    auth = {"authorization": f"Bearer {token}"}

    def visit(n: int) -> tuple[int, int, int, bool]:
        rng = np.random.default_rng([cfg.seed, n])
        shop_id, target = cases["shop_id"].iloc[n], cases["target"].iloc[n]
        answer = _post(client, url, "recommend", {"user": shop_id, "k": cfg.k})
        shown = [i["item"] for i in answer["items"]]
        event = {"user": shop_id, "request_id": answer["request_id"]}
        events = [{**event, "event_id": f"{run}-{n}-i{p}", "kind": IMPRESSION, "item": item} for p, item in enumerate(shown)]
        clicked = None
        if target in shown and rng.random() < cfg.click_relevant:
            clicked = target
        elif shown and rng.random() < cfg.click_other:
            clicked = shown[int(rng.integers(len(shown)))]
        bought = clicked == target and clicked is not None and rng.random() < cfg.purchase_after_click
        if clicked is not None:
            events.append({**event, "event_id": f"{run}-{n}-c", "kind": CLICK, "item": clicked})
        if bought:
            events.append({**event, "event_id": f"{run}-{n}-p", "kind": PURCHASE, "item": clicked})
        _post(client, url, "feedback", {"events": events}, auth)
        return len(shown), int(clicked is not None), int(bought), target in shown

    with httpx.Client(timeout=60) as client, ThreadPoolExecutor(cfg.clients) as pool:
        visits = list(tqdm(pool.map(visit, range(len(cases))), total=len(cases), desc="simulate", unit="shopper"))
    shown, clicks, purchases, hits = np.array(visits, dtype=np.int64).reshape(-1, 4).T
    summary = {"run": run, "shoppers": len(cases), "impressions": int(shown.sum()), "clicks": int(clicks.sum()),
               "purchases": int(purchases.sum()), "hit_rate": round(float(hits.mean()), 6) if len(hits) else None,
               "ctr": round(float(clicks.sum() / max(shown.sum(), 1)), 6)}
    log.info("simulated %d shoppers: %s", len(cases), summary)
    return summary
