"""Cold-start evaluation: cold items, new shoppers by history length, and the warm-item price."""
from __future__ import annotations

import logging
from typing import Callable, Sequence

import numpy as np
import pandas as pd

from components.core.batch_slices import batch_slices
from components.core.config.schema import Params
from components.core.errors import InterestError
from components.core.io import read_json, write_json
from components.data.split import Split, known_before, load_split
from components.evaluation.metrics import ranking_summary, target_ranks
from components.features.embeddings import load_item_embeddings
from components.models.baselines import PopularityScorer, TextSimilarityScorer, fit_baselines, train_counts
from components.models.checkpoint import final_cold_model_path, final_model_path, load_checkpoint
from components.models.fusion import FUSION_NAME, FusionScorer, fused_scorers
from components.models.interest_scorer import (
    COLD_MODEL_SCORER_NAME,
    MODEL_SCORER_NAME,
    ModelScorer,
)

log = logging.getLogger(__name__)

PROTOCOL = (
    "Headline protocol (history not masked), full ranking over all items. Cold items: test cases "
    "whose target is a held-out cold item, next to the warm test cases. New shoppers: warm test "
    "cases with the history cut to its first k items; k = 0 is a text query built from the text "
    "of the shopper's first product (its catalogue text through the same encoder; on Beauty the "
    "title stand-in); full = the whole history. The cold-start stage may cost warm-item NDCG@10 "
    "at most coldstart.max_warm_drop (relative)."
)
K = 10
BEFORE, AFTER, SERVED = MODEL_SCORER_NAME, COLD_MODEL_SCORER_NAME, FUSION_NAME


def _summary(score: Callable[[Sequence], np.ndarray], inputs: Sequence, targets: np.ndarray,
             batch_size: int) -> dict[str, float]:
    ranks = np.concatenate([target_ranks(score(inputs[chunk]), targets[chunk])
                            for chunk in batch_slices(len(targets), batch_size)])
    m = ranking_summary(ranks, [K])
    return {f"recall@{K}": round(m[f"recall@{K}"], 6), f"ndcg@{K}": round(m[f"ndcg@{K}"], 6)}


def evaluate_cold_start(params: Params) -> dict:
    split = load_split(params)
    emb = load_item_embeddings(params)
    batch = params.train.eval_batch_size
    # the test cases: the models as tested and served (train.final_epochs)
    models = {BEFORE: load_checkpoint(final_model_path(params))[0], AFTER: load_checkpoint(final_cold_model_path(params))[0]}
    scorers = {"popularity": PopularityScorer(train_counts(split)),
               "text_similarity": TextSimilarityScorer(emb, params.baselines.text.recency_decay),
               **{name: ModelScorer(m, name=name, batch_size=batch) for name, m in models.items()}}
    scorers[SERVED] = served_fusion(params, split, emb, scorers[AFTER])
    test = split.cases[split.cases["split"] == "test"]
    results: dict = {"protocol": PROTOCOL, "cases": {}}
    for subset, cold in (("cold_items", True), ("warm_items", False)):
        part = test[test["target_is_cold"] == cold]
        results["cases"][subset] = len(part)
        hist, tgt = list(part["history"]), part["target"].to_numpy()
        results[subset] = {name: _summary(s.score, hist, tgt, batch) for name, s in scorers.items()}
    warm = test[~test["target_is_cold"] & (test["history"].map(len) > 0)]
    hist, tgt = list(warm["history"]), warm["target"].to_numpy()
    by_k: dict[str, dict] = {}
    for k in params.coldstart.history_k:
        if k == 0:
            queries = emb[[h[0] for h in hist]]
            by_k["0"] = {
                "popularity": _summary(scorers["popularity"].score, hist, tgt, batch),
                "text_similarity": _summary(scorers["text_similarity"].score, [[h[0]] for h in hist], tgt, batch),
                **{name: _summary(scorers[name].score_texts, queries, tgt, batch) for name in models},
            }
        else:
            cut = truncate_histories(hist, k)
            by_k[str(k)] = {name: _summary(s.score, cut, tgt, batch) for name, s in scorers.items()}
    by_k["full"] = {name: _summary(s.score, hist, tgt, batch) for name, s in scorers.items()}
    results["new_shoppers_by_history_length"] = by_k
    results["cases"]["new_shoppers"] = len(warm)
    results["checks"] = cold_start_checks(results, params.coldstart.max_warm_drop)
    return results


def cold_start_checks(results: dict, max_warm_drop: float) -> dict:
    """The issue's targets, computed, not asserted: the caller reports them."""
    cold, warm = results["cold_items"], results["warm_items"]
    r, n = f"recall@{K}", f"ndcg@{K}"
    drop = (warm[BEFORE][n] - warm[AFTER][n]) / warm[BEFORE][n] if warm[BEFORE][n] else 0.0
    text_cold = cold["text_similarity"][r]
    return {
        "warm_ndcg_relative_drop": round(drop, 4),
        "warm_drop_within_budget": drop <= max_warm_drop,
        "cold_over_warm_recall": round(cold[AFTER][r] / warm[AFTER][r], 4) if warm[AFTER][r] else None,
        "cold_recall_at_least_half_warm": cold[AFTER][r] >= 0.5 * warm[AFTER][r],
        "cold_over_text_similarity_recall": round(cold[AFTER][r] / text_cold, 4) if text_cold else None,
        "cold_recall_at_least_3x_text_similarity": cold[AFTER][r] >= 3 * text_cold,
        "served_cold_over_warm_recall": round(cold[SERVED][r] / warm[SERVED][r], 4) if warm[SERVED][r] else None,
        "served_cold_recall_at_least_half_warm": cold[SERVED][r] >= 0.5 * warm[SERVED][r],
    }


def history_plot_rows(results: dict) -> pd.DataFrame:
    rows = [{"history": k, "model": name, f"ndcg@{K}": m[f"ndcg@{K}"]}
            for k, by_model in results["new_shoppers_by_history_length"].items() for name, m in by_model.items()]
    return pd.DataFrame(rows)


def served_fusion(params: Params, split: Split, embeddings: np.ndarray, model: ModelScorer) -> FusionScorer:
    """The recommender the bundle serves: the fusion with the weights the evaluation tuned on valid,
    its baselines fitted on what is known when the test cases are scored."""
    ranking = params.path(params.evaluate.metrics_file)
    if not ranking.is_file():
        raise InterestError(f"no {ranking}: the served fusion's weights come from `interest evaluate`; run it first")
    fit = fit_baselines(params.baselines, known_before(split, "test"))
    tuned = read_json(ranking)
    return FusionScorer.from_weights(fused_scorers(fit, embeddings, params.baselines, model),
                                     tuned["fusion_weights"], SERVED, tuned["fusion_cold_offset"])


def truncate_histories(histories: Sequence[Sequence[int]], k: int) -> list[list[int]]:
    """The first k items of each history: the shopper as they were after k interactions."""
    return [list(h)[:k] for h in histories]


def run(params: Params) -> dict:
    """Pipeline step `evaluate_cold`: writes the cold-start figures, returns the cases and checks."""
    results = evaluate_cold_start(params)
    cfg = params.coldstart
    write_json(results, params.path(cfg.metrics_file))
    plot = params.path(cfg.plot_file)
    plot.parent.mkdir(parents=True, exist_ok=True)
    history_plot_rows(results).to_csv(plot, index=False)
    log.info("cold items: %s", results["cold_items"])
    log.info("checks: %s", results["checks"])
    return {k: results[k] for k in ("cases", "cold_items", "warm_items", "checks")}
