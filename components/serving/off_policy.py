"""Off-policy value of a recommender from the service's logged slates, before it serves anyone.

Each logged impression is an item the logging policy showed with a known propensity, clicked or
not. A deterministic target policy (a version's greedy top-k for the same shopper) is credited
with the logged impressions of the items it would show as well, each weighted by one over its
logging propensity; the self-normalised estimate (SNIPS) is its clicks per shown item. Items the
logs never showed carry no evidence, so `support` (the share of the target's slate items that
were logged) says how much of the target policy the estimate covers.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from components.feedback.events import CLICK


def logged_impressions(slates: pd.DataFrame, events: pd.DataFrame) -> pd.DataFrame:
    """One row per shown item of a slate with a shopper: request_id, user, item, propensity, clicked."""
    rows = [(s.request_id, s.user, str(item), float(propensity))
            for s in slates.itertuples() if s.user for item, _, propensity in s.items]
    shown = pd.DataFrame(rows, columns=["request_id", "user", "item", "propensity"]).query("propensity > 0")
    clicks = events[events["kind"] == CLICK]
    clicked = set(zip(clicks["request_id"], clicks["item"].astype(str)))
    return shown.assign(clicked=[(r, i) in clicked for r, i in zip(shown["request_id"], shown["item"])])


def snips(impressions: pd.DataFrame, target_slates: dict[str, set[str]]) -> dict:
    """The target's clicks per shown item, from the impressions it would have shown too;
    target_slates: the target's slate per shopper."""
    would_show = np.array([item in target_slates.get(user, ()) for user, item in
                           zip(impressions["user"], impressions["item"])], dtype=bool)
    weights = would_show / impressions["propensity"].to_numpy()
    shown = sum(len(items) for items in target_slates.values())
    covered = sum(len(items & set(impressions.loc[impressions["user"] == user, "item"]))
                  for user, items in target_slates.items())
    return {"value": round(float((weights * impressions["clicked"]).sum() / weights.sum()), 6) if weights.sum() else None,
            "matched_impressions": int(would_show.sum()), "support": round(covered / shown, 6) if shown else None}

