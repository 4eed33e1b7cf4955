"""Accepted feedback as data: what a monitoring window adds to the interactions.

A window whose feedback passed its checks and triggered retraining is written to
ingest.feedback_dir as <window>.parquet (its engagement events as interactions) and, when shoppers
engaged with products added since training, <window>.items.parquet (their catalogue rows). The
folder is a DVC dependency of `ingest`, so every file written is a new data version; files are named
by window, so writing a window again (a retried task) changes nothing. `ingest` appends the folder
to the shop's interactions.
"""
from __future__ import annotations

import hashlib
import logging
from pathlib import Path

import pandas as pd

from components.core.io import read_parquet, write_parquet

log = logging.getLogger(__name__)
ITEMS_SUFFIX = ".items.parquet"


def window_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.glob("*.parquet") if not p.name.endswith(ITEMS_SUFFIX))


def write_window(folder: Path, name: str, interactions: pd.DataFrame, items: pd.DataFrame | None) -> Path:
    """The window's files (atomic, the items first: a window file never names items not yet written)."""
    if items is not None and len(items):
        write_parquet(items.reset_index(drop=True), folder / f"{name}{ITEMS_SUFFIX}")
    return write_parquet(interactions, folder / f"{name}.parquet")


def read_feedback(folder: Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Every accepted window's interactions (oldest window first) and the added products they name."""
    frames = [read_parquet(p) for p in window_files(folder)]
    items = [read_parquet(p) for p in sorted(folder.glob(f"*{ITEMS_SUFFIX}"))]
    inter = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=["user", "item", "timestamp", "rating"])
    catalogue = pd.concat(items, ignore_index=True).drop_duplicates("item") if items else pd.DataFrame(columns=["item"])
    return inter, catalogue


def feedback_version(folder: Path) -> dict:
    """The folder's content hash and its windows: what a bundle records as the feedback it learnt from."""
    h = hashlib.sha256()
    files = sorted(folder.glob("*.parquet")) if folder.is_dir() else []
    for f in files:
        h.update(f.name.encode())
        h.update(f.read_bytes())
    return {"windows": [p.name.removesuffix(".parquet") for p in window_files(folder)] if files else [],
            "sha256": h.hexdigest()[:16]}


def append_feedback(interactions: pd.DataFrame, items: pd.DataFrame, feedback: pd.DataFrame,
                    feedback_items: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame, dict[str, int]]:
    """The shop's tables with the accepted feedback after each shopper's history.

    The data sets hold one interaction per shopper and item, so an engagement with an item the
    shopper already has (or a second engagement with it) adds nothing and is dropped, as is one
    whose item is in neither catalogue. Products added since training join the items table."""
    known_items = set(items["item"].astype(str))
    extra_items = feedback_items[~feedback_items["item"].astype(str).isin(known_items)]
    items = pd.concat([items, extra_items], ignore_index=True) if len(extra_items) else items
    catalogue = known_items | set(extra_items["item"].astype(str))
    fb = feedback[feedback["item"].astype(str).isin(catalogue)].sort_values("timestamp", kind="stable")
    fb = fb.drop_duplicates(["user", "item"])
    seen = pd.MultiIndex.from_frame(interactions[["user", "item"]].astype(str))
    fb = fb[~pd.MultiIndex.from_frame(fb[["user", "item"]].astype(str)).isin(seen)]
    last = interactions.groupby("user")["position"].max()
    start = fb["user"].map(last).fillna(-1).astype("int64") + 1
    fb = fb.assign(position=(start + fb.groupby("user").cumcount()).astype("int32"))
    counts = {"feedback_rows": len(feedback), "appended": len(fb), "new_items": len(extra_items),
              "dropped": len(feedback) - len(fb)}
    if len(fb):
        interactions = pd.concat([interactions, fb.reindex(columns=interactions.columns)], ignore_index=True)
    log.info("accepted feedback: %d rows appended to the interactions (%d already known or repeated), %d added products",
             counts["appended"], counts["dropped"], counts["new_items"])
    return interactions, items, counts
