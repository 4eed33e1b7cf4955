"""The evaluation's HTML report: tables per protocol and charts, one self-contained page."""
from __future__ import annotations

import base64
import html
import io
from typing import Sequence

import pandas as pd
from matplotlib.figure import Figure

from components.core.config.schema import EvaluateParams
from components.core.html_page import html_page
from components.evaluation.metrics import HEADLINE_PROTOCOL, PROTOCOLS
# the metrics tables: numbers right-aligned, dense
METRICS_STYLE = "table.metrics{font-size:0.85em}table.metrics td,table.metrics th{padding:3px 8px;text-align:right}"


def figure_png_base64(fig: Figure) -> str:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110, bbox_inches="tight")
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def comparison_figure(results: dict, metrics: Sequence[str]) -> Figure:
    """Grouped bars per model: each metric on test, one panel per protocol."""
    fig = Figure(figsize=(5 * len(PROTOCOLS), 3.6))
    axes = fig.subplots(1, len(PROTOCOLS), sharey=True, squeeze=False)[0]
    for ax, protocol in zip(axes, PROTOCOLS):
        table = pd.DataFrame(results[protocol]["test"]).T[list(metrics)]
        table.plot.bar(ax=ax, rot=30)
        ax.set_title(f"test, {protocol}")
        ax.grid(axis="y", alpha=0.3)
    return fig


def warm_cold_figure(results: dict, metric: str) -> Figure:
    """One metric per model on warm vs cold test targets (headline protocol)."""
    fig = Figure(figsize=(6, 3.6))
    ax = fig.subplots()
    by_subset = results[HEADLINE_PROTOCOL]
    subsets = [s for s in ("test_warm", "test_cold") if s in by_subset]
    pd.DataFrame({s: {m: v[metric] for m, v in by_subset[s].items()} for s in subsets}).plot.bar(ax=ax, rot=30)
    ax.set_title(f"{metric}: warm vs cold test targets ({HEADLINE_PROTOCOL})")
    ax.grid(axis="y", alpha=0.3)
    return fig


def training_curves_figure(history: Sequence[dict]) -> Figure:
    """Per-epoch dicts (e.g. {"epoch": 3, "loss": .., "valid_ndcg@10": ..}) -> one panel per numeric key.

    The x axis is the `epoch` key when present, else the position in the list.
    """
    frame = pd.DataFrame(list(history))
    x = frame.pop("epoch") if "epoch" in frame else pd.Series(range(1, len(frame) + 1), name="epoch")
    keys = [c for c in frame.columns if pd.api.types.is_numeric_dtype(frame[c])]
    fig = Figure(figsize=(4 * max(len(keys), 1), 3.2))
    for ax, key in zip(fig.subplots(1, max(len(keys), 1), squeeze=False)[0], keys):
        ax.plot(x, frame[key], marker="o", markersize=3)
        ax.set_xlabel(x.name)
        ax.set_title(key)
        ax.grid(alpha=0.3)
    return fig


def _table_html(results: dict, protocol: str, metrics: Sequence[str]) -> str:
    rows = {(subset, model): {m: v[m] for m in metrics}
            for subset, by_model in results[protocol].items() for model, v in by_model.items()}
    return pd.DataFrame.from_dict(rows, orient="index").to_html(
        float_format=lambda v: f"{v:.4f}", border=0, classes="metrics")


def report_html(results: dict, fusion_weights: dict[str, float], cfg: EvaluateParams,
                history: Sequence[dict] | None) -> str:
    """Self-contained page (no external assets): tables per protocol and embedded PNG charts."""
    k = cfg.beyond_k
    accuracy = [f"recall@{k}", f"ndcg@{k}"]
    detail = [*accuracy, "mrr", f"coverage@{k}", f"novelty@{k}"]
    figures = [("Test, both protocols", comparison_figure(results, accuracy)),
               ("Warm vs cold targets", warm_cold_figure(results, f"ndcg@{k}"))]
    if history:
        figures.append(("Training curves", training_curves_figure(history)))
    sections = [f"<h2>Protocol: {html.escape(p)}</h2>{_table_html(results, p, detail)}" for p in PROTOCOLS]
    images = [f'<h2>{html.escape(title)}</h2><img alt="{html.escape(title)}" '
              f'src="data:image/png;base64,{figure_png_base64(fig)}">' for title, fig in figures]
    cases = ", ".join(f"{html.escape(s)}: {n}" for s, n in results["cases"].items())
    weights = ", ".join(f"{html.escape(m)} {w:g}" for m, w in fusion_weights.items())
    return html_page("interest-platform evaluation", style=METRICS_STYLE, body=f"""
<h1>Ranking evaluation</h1>
<p>Full ranking over the whole catalogue (no sampled negatives); ties count against the target.
<b>unmasked</b> = headline protocol of the SASRec / S3-Rec papers; <b>masked</b> = the shopper's
history items are excluded (the target never is). Cases: {cases}.</p>
<p>Fusion weights (tuned on valid): {weights}.</p>
{''.join(sections)}
{''.join(images)}
""")
