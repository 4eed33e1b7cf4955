"""`interest monitor-feedback`: one pass over the feedback stored since the last pass.

It reads the window's events and served slates from the feedback store, checks the events with
the feedback suite (quarantining bad rows, refusing a window whose schema is wrong), keeps the
valid events and the quarantine as Parquet under monitor.out_dir, computes the online metrics of
each model version, arm and policy, appends them to monitor.metrics_file with a plot over time,
decides whether the feedback should become a new data version and retrain the model
(components.monitoring.retraining), and only then moves the watermark (monitor.state_file): a
pass that fails is redone in full.
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass, replace
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from matplotlib.figure import Figure

from components.core.config.schema import Params
from components.core.io import read_json, read_parquet, write_json, write_parquet
from components.feedback.checked_windows import window_paths
from components.feedback.events import REVIEW
from components.feedback.store import open_store
from components.monitoring.drift import Feedback, drift_reports
from components.monitoring.feedback_checks import check_feedback, quarantine_reasons
from components.monitoring.online_metrics import online_metrics
from components.monitoring.quality import quality_report
from components.monitoring.retraining import accept_pending, as_interactions, decide, kept
from components.serving.recommender import load_recommender

log = logging.getLogger(__name__)


def _window_name(until: float) -> str:
    """The window's end to the millisecond: two passes within one second would otherwise share a
    name, and the second would replace the first's record and overwrite its checked events."""
    return datetime.fromtimestamp(until, timezone.utc).strftime("%Y%m%dT%H%M%S.%f")[:-3] + "Z"


def read_history(params: Params) -> list[dict]:
    """Every window of monitor.metrics_file, oldest first."""
    history_file = params.path(params.monitor.metrics_file)
    return read_json(history_file)["windows"] if history_file.is_file() else []


def served_tags(window: dict) -> set[str]:
    return {row["model_tag"] for row in window["metrics"]}


def reference_window(history: list[dict], tags: set[str], min_rows: int) -> dict | None:
    """The newest earlier window served by the same model versions whose feedback was kept and had
    enough engagements to compare with. Windows of other versions are no reference: what a new
    version shows changes what shoppers engage with, and that is not drift in the shoppers."""
    for window in reversed(history):
        engaged = next(v["rows"] for v in window["drift"]["views"] if v["view"] == "items")
        if kept(window) and served_tags(window) == tags and engaged >= min_rows:
            return window
    return None


@dataclass(frozen=True)
class MonitorPass:
    """What one monitoring pass found. `window` is the record monitor.metrics_file keeps (JSON: the
    history later passes compare with); the fields are what the CLI, the DAG and the demo act on."""

    window: dict[str, Any]
    name: str
    events: int
    retrain: bool
    why: str                    # the retraining decision's reason, either way
    review_texts: int           # kept review texts: the feedback report has something new to read
    data_version: dict[str, Any] | None = None   # the new data version, when the pass's feedback was accepted

    @classmethod
    def of(cls, window: dict[str, Any], data_version: dict[str, Any] | None = None) -> "MonitorPass":
        return cls(window, window["name"], window["events"], window["retrain"]["retrain"], window["retrain"]["why"],
                   window["review_texts"], data_version)

    def summary(self) -> dict[str, Any]:
        """The window's record, with the data version when one was made (the CLI's output)."""
        return {**self.window, "data_version": self.data_version}


def monitor_and_accept(params: Params, accept: bool = True) -> MonitorPass:
    """A monitoring pass, then, when it decided to retrain (and `accept`), its pending feedback
    written as a new data version (ingest.feedback_dir) for the next training run."""
    found = monitor(params)
    if accept and found.retrain:
        return replace(found, data_version=accept_pending(params, read_history(params)))
    return found


def monitor(params: Params, until: float | None = None) -> MonitorPass:
    cfg = params.monitor
    state_file = params.path(cfg.state_file)
    since = read_json(state_file)["until"] if state_file.is_file() else 0.0
    until = time.time() if until is None else until
    name = _window_name(until)
    history = [w for w in read_history(params) if w["name"] != name]
    store = open_store(params)
    try:
        events, slates = store.events_between(since, until), store.slates_between(since, until)
        previous = reference_window(history, set(slates["model_tag"]), cfg.drift_min_rows)
        reference = (previous["name"], Feedback(read_parquet(Path(previous["files"]["valid"])),
                                                store.slates_between(previous["since"], previous["until"]))) \
            if previous else None
    finally:
        store.close()
    recommender = load_recommender(params)
    catalogue = recommender.catalogue["item"].astype(str).tolist()
    check = check_feedback(events, catalogue, cfg.max_events_per_minute, params.path(params.validation.expectations_dir),
                           cfg.on_failure, params.path(cfg.reports_dir) / name / "data_docs")
    paths = window_paths(params.path(cfg.out_dir), name)
    files = {"valid": str(write_parquet(check.valid, paths["valid"])),
             "quarantine": str(write_parquet(check.quarantined, paths["quarantine"]))}
    metrics = online_metrics(slates, check.valid, recommender.n_items, set(recommender.new_item_ids()),
                             cfg.k, cfg.next_action_seconds)
    quality = quality_report(events, params.path(cfg.drift_dir) / name)
    drift = drift_reports(recommender, Feedback(check.valid, slates), reference, cfg,
                          params.path(cfg.drift_dir), name)
    window = {"since": since, "until": until, "name": name, "events": len(events), "slates": len(slates),
              "check": check.summary(), "quarantined_by_expectation": quarantine_reasons(check),
              "metrics": metrics, "drift": drift, "quality": quality, "files": files,
              "engagements": len(as_interactions(check.valid, params.ingest.feedback_kinds)),
              "review_texts": int(((check.valid["kind"] == REVIEW) & check.valid["text"].notna()).sum())
              if not check.valid.empty else 0}
    window["retrain"] = decide(window, history, params)
    history.append(window)
    write_json({"windows": history, "latest": window}, params.path(cfg.metrics_file))
    plot_online(history, params.path(cfg.plot_file), cfg.k)
    write_json({"until": until, "name": name}, state_file)
    log.info("feedback %s: %d events (%d quarantined%s), %d slates; drift against %s: %s; retrain: %s (%s)", name,
             len(events), len(check.quarantined), ", window refused" if check.refused else "", len(slates),
             drift["reference"], drift["drifted"], window["retrain"]["retrain"], window["retrain"]["why"])
    return MonitorPass.of(window)


def plot_online(history: list[dict], path: Path, k: int) -> Path:
    """CTR and NDCG@k of each model version and arm, window after window."""
    fig = Figure(figsize=(11, 4))
    axes = fig.subplots(1, 2)
    series: dict[tuple[str, str], list[tuple[datetime, dict]]] = {}
    for window in history:
        when = datetime.fromtimestamp(window["until"], timezone.utc)
        for row in window["metrics"]:
            series.setdefault((row["model_tag"], row["arm"]), []).append((when, row))
    for (tag, arm), points in sorted(series.items()):
        for ax, key in zip(axes, ("ctr", f"ndcg@{k}")):
            ax.plot([p[0] for p in points], [p[1][key] for p in points], marker="o", label=f"{tag} / {arm}")
    for ax, title in zip(axes, ("click-through rate of shown items", f"NDCG@{k} of slates vs the next action")):
        ax.set_title(title)
        ax.tick_params(axis="x", labelrotation=30)
        ax.grid(alpha=0.3)
    if series:
        axes[0].legend(fontsize=8)
    if len(history) == 1:   # one window: an hour either side, not matplotlib's default of years
        when = datetime.fromtimestamp(history[0]["until"], timezone.utc)
        for ax in axes:
            ax.set_xlim(when - timedelta(hours=1), when + timedelta(hours=1))
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    return path
