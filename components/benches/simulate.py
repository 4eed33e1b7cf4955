"""`interest simulate`: held-out shoppers of the data as a shop's traffic against the running service.

Each simulated shopper is a test case of the newest split, known to the service by its raw shop
id. It asks `recommend`, is shown the slate (an impression event for every item), and clicks the
item it really went on to engage with if the slate shows it (probability simulate.click_relevant),
buying it after the click with simulate.purchase_after_click; otherwise it clicks one of the shown
items only now and then (simulate.click_other). Its events go back through `feedback` with the
slate's request id, so the store holds what a shop's front end would have sent.

Two shifts make drift appear: simulate.new_products products of the data that the service does
not know are added through `add_items` first (their real text), and a surge of interest in
simulate.surge_category (a phrase matched in an item's title and categories; `auto` picks the
commonest title word of the new products, else of the less popular half of the catalogue): a
shown item that matches it is clicked with simulate.surge_click.
"""
from __future__ import annotations

import logging
import uuid
from concurrent.futures import ThreadPoolExecutor

import httpx
import numpy as np
import pandas as pd
from tqdm import tqdm

from components.core.config.schema import Params
from components.core.errors import InterestError
from components.core.io import read_parquet
from components.data.ingest import shop_ids
from components.data.sources.locate import read_dataset
from components.data.split import load_split
from components.data.validate import validated_paths
from components.evaluation.metrics import HEADLINE_SUBSET
from components.feedback.events import CLICK, IMPRESSION, PURCHASE
from components.serving.added_items import COLUMNS, load_added

AUTO = "auto"
MIN_WORD = 5   # `auto` surge words: at least this many letters (no "for", "with", sizes)

log = logging.getLogger(__name__)


def held_out_shoppers(params: Params, n: int) -> pd.DataFrame:
    """n test cases (seeded sample; 0 = all) with the shopper's raw shop id and the target's item id."""
    test = load_split(params).cases_as_ids(HEADLINE_SUBSET)
    raw = {p: r for r, p in shop_ids(params, set(test["user"])).items()}
    test = test[test["user"].isin(raw)]
    test = test.sample(min(n, len(test)), random_state=params.simulate.seed) if n else test
    return pd.DataFrame({"shop_id": test["user"].map(raw).to_numpy(), "target": test["target"].to_numpy()})


def unknown_products(params: Params, n: int) -> pd.DataFrame:
    """n products of the data (seeded) that are neither in the trained catalogue nor added yet."""
    known = set(read_parquet(validated_paths(params)["items"])["item"].astype(str))
    added = load_added(params.path(params.serving.added_items_dir))
    known |= set(added.items["item"].astype(str)) if added is not None else set()
    items = read_dataset(params).items.reindex(columns=list(COLUMNS))
    new = items[~items["item"].astype(str).isin(known) & items["title"].notna()]
    if len(new) < n:
        log.warning("simulate: the data has %d products the service does not know; adding those", len(new))
    return new.sample(min(n, len(new)), random_state=params.simulate.seed).astype(object).where(new.notna(), None)


def item_texts(items: pd.DataFrame) -> pd.Series:
    """item id -> lower-case title and categories, what the surge phrase is matched in."""
    text = items["title"].fillna("").astype(str) + " " + items["categories"].fillna("").astype(str)
    return pd.Series(text.str.lower().to_numpy(), index=items["item"].astype(str).to_numpy())


def surge_phrase(texts: pd.Series) -> str:
    """The commonest word of at least MIN_WORD letters in these texts."""
    words = texts.str.findall(rf"[a-z]{{{MIN_WORD},}}").explode().dropna()
    if words.empty:
        raise InterestError("simulate: no word to surge on; set simulate.surge_category to a phrase")
    return str(words.value_counts().index[0])


def catalogue_texts(params: Params) -> tuple[pd.Series, pd.Series]:
    """The trained catalogue's texts, and those of its less popular half (the `auto` surge's pool)."""
    items = read_parquet(validated_paths(params)["items"])
    split = load_split(params)
    counts = split.train.groupby("item_idx").size()
    index = split.item_index.set_index("item")["item_idx"]
    popularity = items["item"].map(index).map(counts).fillna(0).to_numpy()
    texts = item_texts(items)
    return texts, texts[popularity <= np.median(popularity)]


def _post(client: httpx.Client, url: str, endpoint: str, body: dict, headers: dict | None = None) -> dict:
    response = client.post(f"{url}/{endpoint}", json=body, headers=headers or {})
    if response.status_code != 200:
        raise InterestError(f"simulate: {endpoint} answered {response.status_code}: {response.text[:300]}")
    return response.json()


def simulate(params: Params, url: str, token: str, shoppers: int | None = None, surge: str | None = None,
             new_products: int | None = None, cases: pd.DataFrame | None = None) -> dict:
    """shoppers, surge, new_products: None = as simulate.* says; cases: these shoppers (held_out_shoppers)."""
    cfg = params.simulate
    surge = cfg.surge_category if surge is None else surge
    new_products = cfg.new_products if new_products is None else new_products
    if cases is None:
        cases = held_out_shoppers(params, cfg.shoppers if shoppers is None else shoppers)
    run = uuid.uuid4().hex[:8]   # event ids stay unique across runs
    auth = {"authorization": f"Bearer {token}"}
    texts, quiet = catalogue_texts(params) if surge else (pd.Series(dtype=str), pd.Series(dtype=str))
    added = unknown_products(params, new_products) if new_products else pd.DataFrame(columns=list(COLUMNS))
    if len(added):
        with httpx.Client(timeout=120) as client:
            _post(client, url, "add_items", {"products": added.to_dict("records")}, auth)
        texts = pd.concat([texts, item_texts(added)])
    if surge == AUTO:
        surge = surge_phrase(item_texts(added) if len(added) else quiet)
    surging = set(texts.index[texts.str.contains(surge.lower(), regex=False)]) if surge else set()

    def visit(n: int) -> tuple[int, int, int, bool]:
        rng = np.random.default_rng([cfg.seed, n])
        shop_id, target = cases["shop_id"].iloc[n], cases["target"].iloc[n]
        answer = _post(client, url, "recommend", {"user": shop_id, "k": cfg.k})
        shown = [i["item"] for i in answer["items"]]
        event = {"user": shop_id, "request_id": answer["request_id"]}
        events = [{**event, "event_id": f"{run}-{n}-i{p}", "kind": IMPRESSION, "item": item} for p, item in enumerate(shown)]
        clicked = None
        surged = [i for i in shown if i in surging]
        if target in shown and rng.random() < cfg.click_relevant:
            clicked = target
        elif surged and rng.random() < 1 - (1 - cfg.surge_click) ** len(surged):
            clicked = surged[int(rng.integers(len(surged)))]
        elif shown and rng.random() < cfg.click_other:
            clicked = shown[int(rng.integers(len(shown)))]
        bought = clicked == target and clicked is not None and rng.random() < cfg.purchase_after_click
        if clicked is not None:
            events.append({**event, "event_id": f"{run}-{n}-c", "kind": CLICK, "item": clicked})
        if bought:
            events.append({**event, "event_id": f"{run}-{n}-p", "kind": PURCHASE, "item": clicked})
        _post(client, url, "feedback", {"events": events}, auth)
        return len(shown), int(clicked is not None), int(bought), target in shown, len(surged)

    with httpx.Client(timeout=60) as client, ThreadPoolExecutor(cfg.clients) as pool:
        visits = list(tqdm(pool.map(visit, range(len(cases))), total=len(cases), desc="simulate", unit="shopper"))
    shown, clicks, purchases, hits, surged = np.array(visits, dtype=np.int64).reshape(-1, 5).T
    summary = {"run": run, "shoppers": len(cases), "impressions": int(shown.sum()), "clicks": int(clicks.sum()),
               "purchases": int(purchases.sum()), "hit_rate": round(float(hits.mean()), 6) if len(hits) else None,
               "ctr": round(float(clicks.sum() / max(shown.sum(), 1)), 6), "new_products": len(added),
               "surge": surge, "surge_items": len(surging), "surge_impressions": int(surged.sum())}
    log.info("simulated %d shoppers: %s", len(cases), summary)
    return summary
