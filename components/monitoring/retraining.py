"""When a monitoring pass turns the accepted feedback into a new data version and asks for training.

A window is held back (never appended, never a reason to train) when its schema check refused it
or more than monitor.retrain.max_quarantine_share of its events were quarantined: a bot flood or
a broken client says nothing about shoppers. Otherwise its valid engagements wait in the pending
pool until a pass finds a reason to retrain (drift against the previous window in one of
monitor.retrain.drift_views, or the production model's online metric falling below its earlier
windows' mean) and the pool holds at least monitor.retrain.min_events engagements; then every
pending window is written to ingest.feedback_dir (components.data.feedback_data), the next data
version.
"""
from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd

from components.core.config.schema import Params, RetrainParams
from components.core.io import read_parquet
from components.data.feedback_data import feedback_version, write_window
from components.feedback.events import RATING
from components.monitoring.drift import TRAINING
from components.serving.added_items import load_added

log = logging.getLogger(__name__)


def as_interactions(events: pd.DataFrame, kinds: list[str]) -> pd.DataFrame:
    """Engagement events -> user, item, timestamp (the client's time, else arrival), rating."""
    engaged = events[events["kind"].isin(kinds)]
    when = engaged["at"].astype("Float64").fillna(engaged["received_at"].astype("Float64"))
    rating = engaged["rating"].astype("Float64").where(engaged["kind"] == RATING)
    return pd.DataFrame({"user": engaged["user"].astype("string"), "item": engaged["item"].astype("string"),
                         "timestamp": when.round().astype("Int64"), "rating": rating}).reset_index(drop=True)


def kept(window: dict) -> bool:
    """A window whose valid feedback may be compared with and trained on: not held back, its file there."""
    return not window.get("retrain", {}).get("held_back") and Path(window["files"]["valid"]).is_file()


def engagement_count(window: dict, kinds: list[str]) -> int:
    """Counted when the window was measured; windows measured before there was a count, from their file."""
    if "engagements" in window:
        return window["engagements"]
    return len(as_interactions(read_parquet(Path(window["files"]["valid"])), kinds))


def held_back(window: dict, cfg: RetrainParams) -> str | None:
    """Why this window's feedback may not be trained on, or None."""
    check = window["check"]
    if check["refused"]:
        return "the window was refused: " + "; ".join(f["why"] for f in check["failed"])
    share = check["quarantined"] / check["rows"] if check["rows"] else 0.0
    if share > cfg.max_quarantine_share:
        reasons = ", ".join(f"{name}: {n}" for name, n in window["quarantined_by_expectation"].items())
        return (f"{share:.0%} of its events were quarantined ({reasons}), more than "
                f"monitor.retrain.max_quarantine_share ({cfg.max_quarantine_share:.0%})")
    return None


def metric_drops(window: dict, earlier: list[dict], cfg: RetrainParams) -> list[str]:
    """Model versions, arms and policies whose online metric fell below their earlier windows' mean."""
    out = []
    for row in window["metrics"]:
        key = (row["model_tag"], row["arm"], row["policy"])
        before = [r[cfg.metric] for w in earlier for r in w["metrics"]
                  if (r["model_tag"], r["arm"], r["policy"]) == key and r.get(cfg.metric) is not None]
        if before and row.get(cfg.metric) is not None and np.mean(before) > 0:
            drop = 1 - row[cfg.metric] / float(np.mean(before))
            if drop > cfg.max_metric_drop:
                out.append(f"{cfg.metric} of {key[0]} ({key[1]}, {key[2]}) fell {drop:.0%} below its "
                           f"earlier mean {np.mean(before):.4f}")
    return out


def pending_windows(history: list[dict], feedback_dir: Path) -> list[dict]:
    """Windows whose valid feedback is neither held back nor in a data version yet."""
    return [w for w in history if kept(w) and not (feedback_dir / f"{w['name']}.parquet").is_file()]


def decide(window: dict, history: list[dict], params: Params) -> dict:
    """The window's retraining decision; history: the earlier windows."""
    cfg = params.monitor.retrain
    held = held_back(window, cfg)
    if held:
        return {"retrain": False, "held_back": held, "reasons": [], "why": f"held back: {held}"}
    drift = window["drift"]
    reasons = [f"drift in {v['view']} against {drift['reference']}" for v in drift["views"]
               if drift["reference"] != TRAINING and v["view"] in cfg.drift_views and v["drifted"]]
    reasons += metric_drops(window, [w for w in history if not w.get("retrain", {}).get("held_back")], cfg)
    pending = pending_windows([*history, window], params.path(params.ingest.feedback_dir))
    engagements = sum(engagement_count(w, params.ingest.feedback_kinds) for w in pending)
    decision = {"retrain": False, "held_back": None, "reasons": reasons, "pending_windows": len(pending),
                "pending_engagements": engagements}
    if not reasons:
        first = (" (a model version's first window is compared with the training data, which served feedback always "
                 "differs from)") if drift["reference"] == TRAINING else ""
        return {**decision, "why": f"no drift between windows in monitor.retrain.drift_views{first} and no online-metric drop"}
    if engagements < cfg.min_events:
        return {**decision, "why": f"{engagements} accepted engagements pending, fewer than "
                                   f"monitor.retrain.min_events ({cfg.min_events})"}
    return {**decision, "retrain": True, "why": "; ".join(reasons)}


def accept_pending(params: Params, history: list[dict]) -> dict:
    """Write every pending window to ingest.feedback_dir; returns the folder's new version. A window
    already written is skipped, so a retried call adds nothing."""
    folder = params.path(params.ingest.feedback_dir)
    added = load_added(params.path(params.serving.added_items_dir))
    written = []
    for w in pending_windows(history, folder):
        rows = as_interactions(read_parquet(Path(w["files"]["valid"])), params.ingest.feedback_kinds)
        items = added.items[added.items["item"].isin(set(rows["item"]))] if added is not None else None
        write_window(folder, w["name"], rows, items)
        written.append({"window": w["name"], "interactions": len(rows)})
    version = feedback_version(folder)
    log.info("accepted feedback: %d windows written to %s, data version %s", len(written), folder, version["sha256"])
    return {**version, "written": written}
