"""Evidently 0.7 drift reports: the feedback of a window against the training reference.

Four views, each an Evidently Report (HTML for people, JSON read back for the verdicts):
- items: popularity of the engaged items (log training count) and, where the catalogue has them,
  their first category and brand;
- shoppers: events per shopper (the reference: interactions per known shopper). Shown, but it
  has no vote in the window's verdict: a window's events per shopper and a shopper's whole
  training history differ by nature;
- scores: the served slates' scores (the reference: the same recommender's top-k scores for a
  sample of known shoppers' histories);
- texts: the text embeddings of the engaged items (Evidently's embedding drift, a classifier
  between reference and current, ROC AUC over monitor.embedding_drift_threshold is drift).
An index page links every window's reports.
"""
from __future__ import annotations

import html
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

import components.monitoring.pandas_compat  # noqa: F401  (before evidently: it imports a name pandas 3 removed)
from evidently import DataDefinition, Dataset, Report
from evidently.metrics import EmbeddingsDrift
from evidently.metrics.embeddings import ModelDriftMethod
from evidently.presets import DataDriftPreset

from components.core.config import MonitorParams
from components.feedback.events import ENGAGEMENTS
from components.serving.recommender import Recommender

TEXT_COLUMNS = "text"


@dataclass(frozen=True)
class View:
    name: str
    reference: pd.DataFrame
    current: pd.DataFrame
    definition: DataDefinition
    votes: bool = True   # counts toward the window's drift verdict


def item_features(recommender: Recommender, items: pd.Series) -> pd.DataFrame:
    """Per item id: log training count, and first category and brand where the catalogue has them."""
    catalogue = recommender.catalogue.set_index("item")
    idx = catalogue["item_idx"].reindex(items).fillna(0).astype(int).to_numpy()
    counts = np.asarray(recommender.popularity_counts(), dtype=np.float64)
    out = pd.DataFrame({"item_popularity": np.log1p(counts[idx])})
    for column in ("categories", "brand"):
        if column in catalogue and catalogue[column].notna().any():
            values = catalogue[column].reindex(items).astype("string")
            out[column] = values.str.split(",").str[0].str.strip().fillna("(none)").to_numpy(dtype=object)
    return out


def views(recommender: Recommender, events: pd.DataFrame, slates: pd.DataFrame, cfg: MonitorParams,
          rng: np.random.Generator) -> list[View]:
    histories = recommender.bundle.histories()
    sample = histories.sample(min(cfg.drift_reference_shoppers, len(histories)), random_state=int(rng.integers(1 << 31)))
    reference_items = pd.Series([i for h in sample["history"] for i in h])
    engaged = events[events["kind"].isin(ENGAGEMENTS)]
    item_ref, item_cur = item_features(recommender, reference_items), item_features(recommender, engaged["item"])
    categorical = [c for c in item_ref.columns if c != "item_popularity"]
    out = [View("items", item_ref, item_cur, DataDefinition(numerical_columns=["item_popularity"],
                                                            categorical_columns=categorical)),
           View("shoppers", pd.DataFrame({"events_per_shopper": sample["history"].map(len).astype(float)}),
                pd.DataFrame({"events_per_shopper": events.groupby("user").size().astype(float)}),
                DataDefinition(numerical_columns=["events_per_shopper"]), votes=False)]
    served = [score for items in slates["items"] for _, score, _ in items[:cfg.k]]
    top = recommender.top_scores([recommender.known_indices(h) for h in sample["history"]], cfg.k)
    out.append(View("scores", pd.DataFrame({"score": top.ravel()}), pd.DataFrame({"score": np.asarray(served, float)}),
                    DataDefinition(numerical_columns=["score"])))
    text = recommender.item_text_vectors()
    columns = [f"t{j}" for j in range(text.shape[1])]
    ref_rows = text[recommender.known_indices(reference_items.tolist())]
    cur_rows = text[recommender.known_indices(engaged["item"].tolist())]
    out.append(View("texts", pd.DataFrame(ref_rows, columns=columns), pd.DataFrame(cur_rows, columns=columns),
                    DataDefinition(numerical_columns=columns, embeddings={TEXT_COLUMNS: columns})))
    return out


def run_view(view: View, cfg: MonitorParams, out_dir: Path) -> dict:
    """The view's report (HTML and JSON) and its verdict, read back from the JSON."""
    if len(view.current) < cfg.drift_min_rows:
        return {"view": view.name, "votes": view.votes, "rows": len(view.current), "drifted": None,
                "why": f"fewer than monitor.drift_min_rows ({cfg.drift_min_rows}) current rows"}
    if view.name == "texts":
        metrics = [EmbeddingsDrift(embeddings_name=TEXT_COLUMNS,
                                   drift_method=ModelDriftMethod(threshold=cfg.embedding_drift_threshold))]
    else:
        metrics = [DataDriftPreset(drift_share=cfg.drift_share)]
    current, reference = (frame.reset_index(drop=True) for frame in (view.current, view.reference))  # plots bin the index
    snapshot = Report(metrics).run(Dataset.from_pandas(current, data_definition=view.definition),
                                   Dataset.from_pandas(reference, data_definition=view.definition))
    out_dir.mkdir(parents=True, exist_ok=True)
    snapshot.save_html(str(out_dir / f"{view.name}.html"))
    snapshot.save_json(str(out_dir / f"{view.name}.json"))
    return {"view": view.name, "votes": view.votes, "rows": len(view.current), "reference_rows": len(view.reference),
            **verdict(json.loads((out_dir / f"{view.name}.json").read_text()), cfg),
            "html": str(out_dir / f"{view.name}.html")}


def verdict(report: dict, cfg: MonitorParams) -> dict:
    """Drift as Evidently's JSON states it: the share of drifted columns, or the embedding score."""
    for metric in report["metrics"]:
        config = metric["config"]
        if config["type"].endswith("DriftedColumnsCount"):
            share = float(metric["value"]["share"])
            return {"drifted": share >= cfg.drift_share, "drifted_share": share}
        if config["type"].endswith("EmbeddingsDrift"):
            score = float(metric["value"])
            return {"drifted": score > cfg.embedding_drift_threshold, "drift_score": score}
    raise ValueError("the report has no drift metric")


def write_index(reports_dir: Path) -> Path:
    """reports_dir/index.html: every window's verdicts, newest first, linking its reports."""
    rows = []
    for summary_file in sorted(reports_dir.glob("*/drift.json"), reverse=True):
        window = json.loads(summary_file.read_text())
        cells = "".join(
            f"<td>{'–' if v['drifted'] is None else ('<b>drift</b>' if v['drifted'] else 'stable')}"
            + (f" (<a href='{html.escape(Path(v['html']).relative_to(reports_dir).as_posix())}'>report</a>)" if "html" in v else "")
            + "</td>" for v in window["views"])
        verdict_cell = "<b>drift</b>" if window["drifted"] else "stable"
        rows.append(f"<tr><td>{html.escape(summary_file.parent.name)}</td>{cells}<td>{verdict_cell}</td></tr>")
    page = ("<!doctype html><meta charset='utf-8'><title>Feedback drift</title>"
            "<style>body{font-family:sans-serif;margin:2em}td,th{padding:.3em 1em;border-bottom:1px solid #ddd}</style>"
            "<h1>Feedback drift against the training reference</h1><table><tr><th>window</th><th>items</th>"
            "<th>shoppers (no vote)</th><th>scores</th><th>texts</th><th>verdict</th></tr>" + "".join(rows) + "</table>")
    path = reports_dir / "index.html"
    path.write_text(page, encoding="utf-8")
    return path


def drift_reports(recommender: Recommender, events: pd.DataFrame, slates: pd.DataFrame, cfg: MonitorParams,
                  drift_dir: Path, window: str) -> dict:
    """Every view's report under drift_dir/window, the verdicts in drift.json, the index updated."""
    out_dir = drift_dir / window
    results = [run_view(v, cfg, out_dir) for v in views(recommender, events, slates, cfg, np.random.default_rng(cfg.seed))]
    summary = {"window": window, "drifted": any(v["drifted"] for v in results if v["votes"]), "views": results}
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "drift.json").write_text(json.dumps(summary, indent=2))
    summary["index"] = str(write_index(drift_dir))
    return summary
