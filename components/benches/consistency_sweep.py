"""`make bench-consistency`: what serving.personalisation trades, measured on the valid cases.

For each level of the knob, every sampled shopper gets two consecutive greedy slates as served
(history hidden): one from their history up to the valid target, and one a purchase later (up to
the test target), blended toward their segment's popularity as served. Reported per level: NDCG@10 of the first slate against the valid target,
slate stability (mean Jaccard of the two slates) and catalogue coverage of the first slates.
"""
from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure
from tqdm import tqdm

from components.core.batch_slices import batch_slices
from components.core.config.schema import Params
from components.core.io import write_json
from components.data.split import load_split
from components.serving.policies import candidates
from components.serving.recommender import Recommender, load_recommender
from components.benches.replay import case_ndcg

log = logging.getLogger(__name__)
K = 10


def _slates(recommender: Recommender, scores: np.ndarray, histories: list[list[int]],
            segments: list[int]) -> list[np.ndarray]:
    out = []
    for row, history, segment in zip(scores, histories, segments):
        s = recommender.personalised(row, len(history), segment).copy()
        s[history] = -np.inf
        s[0] = -np.inf
        out.append(candidates(s, K))
    return out


def _fused(recommender: Recommender, histories: list[list[int]], batch: int) -> np.ndarray:
    return np.concatenate([recommender.score(histories[c]) for c in batch_slices(len(histories), batch)])


def bench_consistency(params: Params) -> dict:
    cfg = params.benchmark
    recommender = load_recommender(params)
    split = load_split(params)
    cases = split.cases.pivot(index="user", columns="split", values=["history", "target"]).dropna()
    if cfg.consistency_cases:
        cases = cases.sample(n=min(cfg.consistency_cases, len(cases)), random_state=params.data.seed)
    before = [list(h) for h in cases[("history", "valid")]]
    after = [list(h) for h in cases[("history", "test")]]
    targets = cases[("target", "valid")].to_numpy()
    segments = [recommender.segment_of(user) for user in cases.index]
    log.info("consistency: %d shoppers, levels %s", len(before), cfg.consistency_levels)
    fused_before = _fused(recommender, before, params.evaluate.batch_size)
    fused_after = _fused(recommender, after, params.evaluate.batch_size)
    levels, base = [], recommender.serving
    for level in tqdm(cfg.consistency_levels, desc="personalisation levels"):
        recommender.serving = base.model_copy(update={"personalisation": level})
        first = _slates(recommender, fused_before, before, segments)
        second = _slates(recommender, fused_after, after, segments)
        ndcg = [case_ndcg(list(s), t, K) for s, t in zip(first, targets)]
        jaccard = [len(set(a) & set(b)) / len(set(a) | set(b)) for a, b in zip(first, second)]
        levels.append({"personalisation": level, f"ndcg@{K}": round(float(np.mean(ndcg)), 6),
                       "slate_jaccard": round(float(np.mean(jaccard)), 6),
                       f"coverage@{K}": round(len(set(np.concatenate(first))) / recommender.n_items, 6)})
        log.info("personalisation %.2f: %s", level, levels[-1])
    recommender.serving = base
    figures = {"model_tag": recommender.tag, "shoppers": len(before), "thin_history": base.thin_history,
               "levels": levels}
    write_json(figures, params.path(cfg.consistency_metrics_file))
    _plot(levels, params.path(cfg.consistency_plot))
    return figures


def _plot(levels: list[dict], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig = Figure(figsize=(11, 4.2))
    axes = fig.subplots(1, 2)
    ndcg = [lv[f"ndcg@{K}"] for lv in levels]
    for ax, key, label in ((axes[0], "slate_jaccard", "slate stability (Jaccard of consecutive slates)"),
                           (axes[1], f"coverage@{K}", f"catalogue coverage@{K}")):
        x = [lv[key] for lv in levels]
        ax.plot(x, ndcg, "o-", color="tab:blue")
        for lv, xi, yi in zip(levels, x, ndcg):
            ax.annotate(f"{lv['personalisation']:g}", (xi, yi), textcoords="offset points", xytext=(5, 5), fontsize=9)
        ax.set_xlabel(label)
        ax.set_ylabel(f"NDCG@{K} (valid)")
        ax.grid(alpha=0.3)
    fig.suptitle("serving.personalisation: accuracy against consistency and coverage (labels: knob level)")
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def consistency_table(figures: dict) -> str:
    lines = [f"model {figures['model_tag']}, {figures['shoppers']} shoppers (valid cases)",
             f"{'personalisation':>15} {'NDCG@10':>9} {'Jaccard':>9} {'coverage':>9}"]
    for lv in figures["levels"]:
        lines.append(f"{lv['personalisation']:>15g} {lv[f'ndcg@{K}']:>9.4f} {lv['slate_jaccard']:>9.4f} "
                     f"{lv[f'coverage@{K}']:>9.4f}")
    return "\n".join(lines)
