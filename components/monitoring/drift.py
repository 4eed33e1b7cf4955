"""Evidently 0.7 drift reports: the feedback of a window against a reference.

Every window is compared with the training data (how far the feedback has moved from what the
model learnt) and, for the verdict that may trigger retraining (components.monitoring.retraining),
with the previous window served by the same model versions when there is one: feedback shaped by
the same recommendations, so what changed between them is the shoppers. Against the training data
served feedback always drifts (slates favour what the model ranks high), so a version's first
window, which has only that reference, is described and triggers nothing.
Four views, each an Evidently Report (HTML for people, JSON read back for the verdicts):
- items: popularity of the engaged items (log training count) and, where the catalogue has them,
  their first category and brand;
- shoppers: events per shopper (training reference: interactions per known shopper). Shown, but
  it has no vote in the window's verdict: a window's events per shopper and a shopper's whole
  training history differ by nature;
- scores: the served slates' scores (training reference: the same recommender's top-k scores for
  a sample of known shoppers' histories);
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

from components.core.config.schema import MonitorParams
from components.core.html_page import html_page
from components.feedback.events import ENGAGEMENTS
from components.serving.recommender import Recommender

TEXT_COLUMNS = "text"
TRAINING = "training"   # the reference's name when there is no earlier window


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


@dataclass(frozen=True)
class Feedback:
    """A window's valid events and served slates."""
    events: pd.DataFrame
    slates: pd.DataFrame

    def engaged_items(self) -> pd.Series:
        return self.events.loc[self.events["kind"].isin(ENGAGEMENTS), "item"].reset_index(drop=True)

    def served_scores(self, k: int) -> np.ndarray:
        return np.asarray([score for items in self.slates["items"] for _, score, _ in items[:k]], dtype=float)

    def events_per_shopper(self) -> pd.Series:
        return self.events.groupby("user").size().astype(float)


def training_reference(recommender: Recommender, cfg: MonitorParams, rng: np.random.Generator
                       ) -> tuple[pd.Series, pd.Series, np.ndarray]:
    """Engaged items, events per shopper and top-k scores of a sample of known shoppers."""
    histories = recommender.bundle.histories()
    sample = histories.sample(min(cfg.drift_reference_shoppers, len(histories)), random_state=int(rng.integers(1 << 31)))
    top = recommender.top_scores([recommender.known_indices(h) for h in sample["history"]], cfg.k)
    return (pd.Series([i for h in sample["history"] for i in h]), sample["history"].map(len).astype(float),
            top.ravel())


def views(recommender: Recommender, current: Feedback, previous: Feedback | None, cfg: MonitorParams,
          rng: np.random.Generator) -> list[View]:
    if previous is None:
        ref_items, ref_activity, ref_scores = training_reference(recommender, cfg, rng)
    else:
        ref_items, ref_activity, ref_scores = (previous.engaged_items(), previous.events_per_shopper(),
                                               previous.served_scores(cfg.k))
    cur_items = current.engaged_items()
    item_ref, item_cur = item_features(recommender, ref_items), item_features(recommender, cur_items)
    categorical = [c for c in item_ref.columns if c != "item_popularity"]
    text = recommender.item_text_vectors()
    columns = [f"t{j}" for j in range(text.shape[1])]
    return [View("items", item_ref, item_cur, DataDefinition(numerical_columns=["item_popularity"],
                                                             categorical_columns=categorical)),
            View("shoppers", pd.DataFrame({"events_per_shopper": ref_activity.to_numpy()}),
                 pd.DataFrame({"events_per_shopper": current.events_per_shopper().to_numpy()}),
                 DataDefinition(numerical_columns=["events_per_shopper"]), votes=False),
            View("scores", pd.DataFrame({"score": ref_scores}), pd.DataFrame({"score": current.served_scores(cfg.k)}),
                 DataDefinition(numerical_columns=["score"])),
            View("texts", pd.DataFrame(text[recommender.known_indices(ref_items.tolist())], columns=columns),
                 pd.DataFrame(text[recommender.known_indices(cur_items.tolist())], columns=columns),
                 DataDefinition(numerical_columns=columns, embeddings={TEXT_COLUMNS: columns}))]


def run_view(view: View, cfg: MonitorParams, out_dir: Path) -> dict:
    """The view's report (HTML and JSON) and its verdict, read back from the JSON."""
    if len(view.current) < cfg.drift_min_rows:
        return {"view": view.name, "votes": view.votes, "rows": len(view.current), "drifted": None,
                "why": f"fewer than monitor.drift_min_rows ({cfg.drift_min_rows}) current rows"}
    current, reference = view.current, view.reference
    if view.name == "texts":
        metrics = [EmbeddingsDrift(embeddings_name=TEXT_COLUMNS,
                                   drift_method=ModelDriftMethod(threshold=cfg.embedding_drift_threshold))]
        # Evidently draws a t-SNE map of the rows: 90% of the view's time, and it grows with the rows
        current, reference = (frame.sample(min(len(frame), cfg.text_drift_rows), random_state=cfg.seed)
                              for frame in (current, reference))
    else:
        metrics = [DataDriftPreset(drift_share=cfg.drift_share)]
    current, reference = (frame.reset_index(drop=True) for frame in (current, reference))  # plots bin the index
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


def _verdict_cells(views: list[dict], reports_dir: Path) -> str:
    return "".join(
        f"<td>{'–' if v['drifted'] is None else ('<b>drift</b>' if v['drifted'] else 'stable')}"
        + (f" (<a href='{html.escape(Path(v['html']).relative_to(reports_dir).as_posix())}'>report</a>)" if "html" in v else "")
        + "</td>" for v in views)


def write_index(reports_dir: Path) -> Path:
    """reports_dir/index.html: every window's verdicts, newest first, linking its reports."""
    rows = []
    for summary_file in sorted(reports_dir.glob("*/drift.json"), reverse=True):
        window = json.loads(summary_file.read_text())
        verdict_cell = "<b>drift</b>" if window["drifted"] else "stable"
        quality = summary_file.parent / "quality.html"   # components.monitoring.quality, when the window had events
        quality_cell = f"<a href='{html.escape(quality.relative_to(reports_dir).as_posix())}'>data quality</a>" if quality.is_file() else "–"
        reference = window.get("reference", TRAINING)   # windows written before there were two references
        rows.append(f"<tr><td>{html.escape(summary_file.parent.name)}</td><td>{html.escape(reference)}</td>"
                    f"{_verdict_cells(window['views'], reports_dir)}<td>{verdict_cell}</td>"
                    f"{_verdict_cells(window.get('training_views', window['views']), reports_dir)}<td>{quality_cell}</td></tr>")
    views = "<th>items</th><th>shoppers (no vote)</th><th>scores</th><th>texts</th>"
    page = html_page("Feedback drift", body=(
            "<h1>Feedback drift</h1><p>Each window against the previous one served by the same model versions (the "
            "verdict that can trigger retraining; a version's first window against the training data), and against "
            "the training data.</p><table><tr><th rowspan=2>window</th><th rowspan=2>reference</th>"
            "<th colspan=5>against the reference</th><th colspan=4>against the training data</th>"
            f"<th rowspan=2>incoming feedback</th></tr><tr>{views}<th>verdict</th>{views}</tr>" + "".join(rows) + "</table>"))
    path = reports_dir / "index.html"
    path.write_text(page, encoding="utf-8")
    return path


def drift_reports(recommender: Recommender, current: Feedback, previous: tuple[str, Feedback] | None,
                  cfg: MonitorParams, drift_dir: Path, window: str) -> dict:
    """Every view's report under drift_dir/window against the previous window (name, feedback) or,
    when None, the training data; with a previous window, also against the training data (under
    drift_dir/window/training: how far the feedback has moved from what the model learnt). The
    verdicts go to drift.json, the index is updated."""
    out_dir = drift_dir / window

    def against(reference: Feedback | None, folder: Path) -> list[dict]:
        return [run_view(v, cfg, folder) for v in views(recommender, current, reference, cfg, np.random.default_rng(cfg.seed))]

    results = against(previous[1] if previous else None, out_dir)
    summary = {"window": window, "reference": f"window {previous[0]}" if previous else TRAINING,
               "drifted": any(v["drifted"] for v in results if v["votes"]), "views": results,
               "training_views": against(None, out_dir / TRAINING) if previous else results}
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "drift.json").write_text(json.dumps(summary, indent=2))
    summary["index"] = str(write_index(drift_dir))
    return summary
