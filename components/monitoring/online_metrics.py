"""Online metrics of what was served, per model version, A/B arm and policy: how often shown items
were clicked, carted and bought, how much of the catalogue and how many new products the slates
showed, and NDCG@k of each slate against what its shopper did next."""
from __future__ import annotations

import numpy as np
import pandas as pd

from components.feedback.events import ADD_TO_CART, CLICK, PURCHASE

GROUP = ["model_tag", "arm", "policy"]
NEXT_ACTIONS = (CLICK, ADD_TO_CART, PURCHASE)


def next_action_gain(slates: pd.DataFrame, events: pd.DataFrame, k: int, horizon_seconds: float) -> pd.Series:
    """Per slate with a shopper: the NDCG@k gain of their first click, cart or purchase within
    horizon_seconds after it was served (1/log2(1 + position) if the slate showed that item in
    its top k, else 0); NaN where the shopper did nothing in time."""
    actions = events[events["kind"].isin(NEXT_ACTIONS)]
    actions = actions.assign(when=actions["at"].fillna(actions["received_at"]))[["user", "item", "when"]]
    served = slates[slates["user"].notna()][["request_id", "user", "served_at", "items"]]
    if served.empty or actions.empty:
        return pd.Series(np.nan, index=slates.index)
    pairs = served.reset_index().merge(actions, on="user")
    pairs = pairs[(pairs["when"] >= pairs["served_at"]) & (pairs["when"] < pairs["served_at"] + horizon_seconds)]
    first = pairs.sort_values("when").groupby("index").head(1)

    def gain(row) -> float:
        shown = [entry[0] for entry in row["items"][:k]]
        return 1 / np.log2(shown.index(row["item"]) + 2) if row["item"] in shown else 0.0

    out = pd.Series(np.nan, index=slates.index)
    if len(first):
        out.loc[first["index"].to_numpy()] = first.apply(gain, axis=1).to_numpy()
    return out


def online_metrics(slates: pd.DataFrame, events: pd.DataFrame, catalogue_size: int, new_items: set[str],
                   k: int, horizon_seconds: float) -> list[dict]:
    """One row of figures per (model_tag, arm, policy) that served slates in the window."""
    if slates.empty:
        return []
    slates = slates.assign(gain=next_action_gain(slates, events, k, horizon_seconds))
    attributed = events[events["request_id"].isin(set(slates["request_id"]))]
    by_request = attributed.groupby(["request_id", "kind"]).size().unstack(fill_value=0)
    rows = []
    for key, group in slates.groupby(GROUP, dropna=False):
        shown = [entry[0] for items in group["items"] for entry in items]
        counts = by_request.reindex(group["request_id"]).fillna(0)

        def total(kind: str) -> int:
            return int(counts[kind].sum()) if kind in counts else 0

        rows.append({**dict(zip(GROUP, key)), "slates": len(group), "items_shown": len(shown),
                     "ctr": round(total(CLICK) / max(len(shown), 1), 6),
                     "add_to_cart_rate": round(total(ADD_TO_CART) / len(group), 6),
                     "purchase_rate": round(total(PURCHASE) / len(group), 6),
                     "coverage": round(len(set(shown)) / max(catalogue_size, 1), 6),
                     "new_item_share": round(sum(item in new_items for item in shown) / max(len(shown), 1), 6),
                     f"ndcg@{k}": None if group["gain"].isna().all() else round(float(group["gain"].mean()), 6),
                     "slates_with_next_action": int(group["gain"].notna().sum())})
    return rows
