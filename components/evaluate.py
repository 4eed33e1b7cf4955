"""Evaluate every recommender on valid and test, under both protocols, and report.

Protocols: `unmasked` is the headline protocol of the SASRec / S3-Rec papers (the shopper's
history competes with the other items); `masked` hides history items (never the target).
Subsets: valid, test, and test split by whether the target is a cold (never-trained) item.
Each scorer scores each case once; both protocols are ranked from the same scores.
"""
from __future__ import annotations

import base64
import html
import io
import logging
from dataclasses import dataclass
from typing import Sequence

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from components.baselines import PopularityScorer, fit_baselines, train_counts
from components.config import EvaluateParams, Params
from components.embed import load_item_embeddings
from components.fusion import FusionScorer, tune_fusion
from components.io import read_json, write_json
from components.metrics import (
    PROTOCOLS,
    apply_protocol,
    catalogue_coverage,
    item_self_information,
    novelty,
    ranking_summary,
    target_ranks,
    top_k_items,
)
from components.coldstart import cold_model_path
from components.recommender import COLD_MODEL_SCORER_NAME, load_model_scorer
from components.scorer import Scorer
from components.split import CASE_SPLITS, Split, known_before, load_split

log = logging.getLogger(__name__)

# subset -> (split the cases come from, required target_is_cold or None for all)
SUBSETS: dict[str, tuple[str, bool | None]] = {
    "valid": ("valid", None), "test": ("test", None), "test_warm": ("test", False), "test_cold": ("test", True),
}
HEADLINE = ("unmasked", "test")


@dataclass(frozen=True)
class RankedCases:
    """Per case, for one protocol: the target's 0-based rank and the top-k recommended items."""

    ranks: np.ndarray
    top: np.ndarray


def build_scorers(params: Params, split: Split, embeddings: np.ndarray) -> dict[str, list[Scorer]]:
    """Per case split, every recommender to evaluate: the single scorers, then their fusion.

    Baselines are fit on what is known when that split's cases are scored (`known_before`).
    The fusion combines them with the served model, the cold-start one (it also ranks new
    products); the trained model alone is reported beside it. The fusion's weights are tuned on
    valid and applied unchanged to the test-time scorers.
    """
    trained = load_model_scorer(params)
    served = load_model_scorer(params, cold_model_path(params), COLD_MODEL_SCORER_NAME)
    fused = {name: [*fit_baselines(params.baselines, known_before(split, name), embeddings), served]
             for name in CASE_SPLITS}
    valid = split.cases[split.cases["split"] == "valid"]
    weights = tune_fusion(fused["valid"], list(valid["history"]), valid["target"].to_numpy(), params.fusion,
                          params.evaluate.batch_size).weights
    return {name: [*scorers, trained, FusionScorer(scorers, weights)] for name, scorers in fused.items()}


def rank_cases(scorer: Scorer, histories: Sequence[Sequence[int]], targets: np.ndarray,
               cfg: EvaluateParams) -> dict[str, RankedCases]:
    """Rank every case's target under each protocol, in batches of cfg.batch_size shoppers."""
    ranks: dict[str, list[np.ndarray]] = {p: [] for p in PROTOCOLS}
    tops: dict[str, list[np.ndarray]] = {p: [] for p in PROTOCOLS}
    for start in range(0, len(histories), cfg.batch_size):
        hist, tgt = histories[start:start + cfg.batch_size], targets[start:start + cfg.batch_size]
        scores = scorer.score(hist)
        if np.isnan(scores).any():
            raise ValueError(f"scorer {scorer.name} returned NaN scores; fix the scorer, NaN cannot be ranked")
        for protocol in PROTOCOLS:
            ranked = apply_protocol(scores, hist, tgt, protocol)
            ranks[protocol].append(target_ranks(ranked, tgt))
            tops[protocol].append(top_k_items(ranked, cfg.beyond_k))
    return {p: RankedCases(np.concatenate(ranks[p]), np.concatenate(tops[p])) for p in PROTOCOLS}


def summarise(ranked: RankedCases, cfg: EvaluateParams, n_items: int, self_information: np.ndarray) -> dict[str, float]:
    """Accuracy (Recall/NDCG@k, MRR) plus catalogue coverage and novelty of the top-k lists."""
    out = ranking_summary(ranked.ranks, cfg.ks)
    out[f"coverage@{cfg.beyond_k}"] = catalogue_coverage(ranked.top, n_items)
    out[f"novelty@{cfg.beyond_k}"] = novelty(ranked.top, self_information)
    return {name: round(value, 6) for name, value in out.items()}


def subset_masks(cases: pd.DataFrame) -> dict[str, np.ndarray]:
    """Boolean row mask of `cases` for every non-empty subset (empty ones are left out, not zeroed)."""
    masks = {}
    for subset, (split_name, cold) in SUBSETS.items():
        mask = (cases["split"] == split_name).to_numpy()
        if cold is not None:
            mask = mask & (cases["target_is_cold"].to_numpy() == cold)
        if mask.any():
            masks[subset] = mask
    return masks


def rank_all_cases(scorers: dict[str, Scorer], cases: pd.DataFrame, cfg: EvaluateParams) -> dict[str, RankedCases]:
    """Rank every case (in `cases` order) with the scorer fit for its split."""
    parts = {}
    for name, scorer in scorers.items():
        rows = np.flatnonzero((cases["split"] == name).to_numpy())
        if len(rows):
            parts[name] = (rows, rank_cases(scorer, list(cases["history"].iloc[rows]),
                                            cases["target"].to_numpy()[rows], cfg))
    order = np.argsort(np.concatenate([rows for rows, _ in parts.values()]))
    if len(order) != len(cases):
        raise ValueError(f"every case needs a scorer for its split; scorers given for {sorted(scorers)}")
    return {p: RankedCases(np.concatenate([r[p].ranks for _, r in parts.values()])[order],
                           np.concatenate([r[p].top for _, r in parts.values()])[order]) for p in PROTOCOLS}


def evaluate_scorers(scorers: dict[str, Sequence[Scorer]], split: Split, cfg: EvaluateParams) -> dict:
    """{protocol: {subset: {scorer: metrics}}} plus the number of cases per subset.

    `scorers` holds, per case split, the same recommenders in the same order (fit for that split).
    """
    n_items = len(split.item_index)
    self_info = item_self_information(train_counts(split), cfg.novelty_pseudocount)
    cases = split.cases.reset_index(drop=True)
    masks = subset_masks(cases)
    results: dict = {p: {s: {} for s in masks} for p in PROTOCOLS}
    for fitted in zip(*scorers.values()):
        ranked = rank_all_cases(dict(zip(scorers, fitted)), cases, cfg)
        name = fitted[0].name
        for protocol in PROTOCOLS:
            for subset, mask in masks.items():
                part = RankedCases(ranked[protocol].ranks[mask], ranked[protocol].top[mask])
                results[protocol][subset][name] = summarise(part, cfg, n_items, self_info)
        if HEADLINE[1] in masks:
            log.info("%s on %s (%s): %s", name, HEADLINE[1], HEADLINE[0], results[HEADLINE[0]][HEADLINE[1]][name])
    results["cases"] = {subset: int(mask.sum()) for subset, mask in masks.items()}
    return results


def popularity_check(split: Split, cfg: EvaluateParams) -> dict:
    """Popularity on the test cases with items counted over every interaction, test targets
    included. That leaks the test, so it is no result, but it is how the published Pop row is
    computed: figures close to it mean our split and metric are the published ones."""
    counts = train_counts(split) + np.bincount(split.cases["target"].to_numpy(), minlength=len(split.item_index) + 1)
    test = split.cases[split.cases["split"] == "test"]
    ranked = rank_cases(PopularityScorer(counts), list(test["history"]), test["target"].to_numpy(), cfg)
    summary = ranking_summary(ranked[HEADLINE[0]].ranks, cfg.ks)
    return {"protocol": HEADLINE[0], "counts": "all interactions, test targets included (leaks the test)",
            **{name: round(value, 6) for name, value in summary.items()}}


def comparison_table(results: dict, subset: str = "test") -> pd.DataFrame:
    """One row per (model, protocol) on a subset: the per-model comparison DVC plots."""
    rows = [{"label": f"{model} ({protocol})", "model": model, "protocol": protocol, **metrics}
            for protocol in PROTOCOLS for model, metrics in results[protocol][subset].items()]
    return pd.DataFrame(rows)


# --------------------------------------------------------------------------- report
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
    by_subset = results[HEADLINE[0]]
    subsets = [s for s in ("test_warm", "test_cold") if s in by_subset]
    pd.DataFrame({s: {m: v[metric] for m, v in by_subset[s].items()} for s in subsets}).plot.bar(ax=ax, rot=30)
    ax.set_title(f"{metric}: warm vs cold test targets ({HEADLINE[0]})")
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
    return f"""<!doctype html>
<html><head><meta charset="utf-8"><title>interest-platform evaluation</title>
<style>body{{font-family:sans-serif;margin:2em;max-width:1400px}}
table.metrics{{border-collapse:collapse;font-size:0.85em}}
table.metrics td,table.metrics th{{padding:3px 8px;border-bottom:1px solid #ddd;text-align:right}}</style>
</head><body>
<h1>Ranking evaluation</h1>
<p>Full ranking over the whole catalogue (no sampled negatives); ties count against the target.
<b>unmasked</b> = headline protocol of the SASRec / S3-Rec papers; <b>masked</b> = the shopper's
history items are excluded (the target never is). Cases: {cases}.</p>
<p>Fusion weights (tuned on valid): {weights}.</p>
{''.join(sections)}
{''.join(images)}
</body></html>
"""


def run_evaluate(params: Params) -> dict:
    """Fit, tune and evaluate every scorer; write ranking metrics, comparison CSV and HTML report."""
    split = load_split(params)
    scorers = build_scorers(params, split, load_item_embeddings(params))
    results = evaluate_scorers(scorers, split, params.evaluate)
    fusion_weights = next((s.weight_by_name for s in scorers["test"] if isinstance(s, FusionScorer)), {})
    results["fusion_weights"] = fusion_weights
    results["popularity_check"] = popularity_check(split, params.evaluate)
    cfg = params.evaluate
    write_json(results, params.path(cfg.metrics_file))
    comparison = params.path(cfg.comparison_file)
    comparison.parent.mkdir(parents=True, exist_ok=True)
    comparison_table(results).to_csv(comparison, index=False)
    history_file = params.path(params.train.history_file)
    history = read_json(history_file) if history_file.is_file() else None
    report = params.path(cfg.report_file)
    report.parent.mkdir(parents=True, exist_ok=True)
    report.write_text(report_html(results, fusion_weights, cfg, history), encoding="utf-8")
    log.info("evaluation written: %s, %s, %s", cfg.metrics_file, cfg.comparison_file, report)
    return results
