"""Evaluate every recommender on valid and test, under both protocols, and report.

Protocols: `unmasked` is the headline protocol of the SASRec / S3-Rec papers (the shopper's
history competes with the other items); `masked` hides history items (never the target).
Subsets: valid, test, and test split by whether the target is a cold (never-trained) item.
Each scorer scores each case once; both protocols are ranked from the same scores.

Two settings of the test figures: the top-level ones are the deployed recommender's (the final
models, which also trained on every shopper's valid item, and baselines that count it), and
`protocol_peers` holds the test cases ranked by what was selected on valid (models and
baselines fitted on the training interactions only, the same tuned fusion): the protocol of
the published sequential recommenders, the only figures set beside theirs.
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Sequence

import numpy as np
import pandas as pd

from components.core.batch_slices import batch_slices
from components.core.config.schema import EvaluateParams, Params
from components.core.io import read_json, write_json
from components.data.split import CASE_SPLITS, Split, known_before, load_split
from components.evaluation.fusion_tuning import tune_fusion
from components.evaluation.metrics import (
    HEADLINE_PROTOCOL,
    HEADLINE_SUBSET,
    PROTOCOLS,
    apply_protocol,
    catalogue_coverage,
    item_self_information,
    novelty,
    ranking_summary,
    target_ranks,
    top_k_items,
)
from components.evaluation.report import report_html
from components.features.embeddings import load_item_embeddings
from components.models.baselines import PopularityScorer, fit_baselines, train_counts
from components.models.checkpoint import cold_model_path, final_cold_model_path, final_model_path, model_path
from components.models.fusion import FusionScorer, fused_scorers
from components.models.interest_scorer import COLD_MODEL_SCORER_NAME, load_model_scorer
from components.models.scorer_contract import Scorer

log = logging.getLogger(__name__)

# subset -> (split the cases come from, required target_is_cold or None for all)
SUBSETS: dict[str, tuple[str, bool | None]] = {
    "valid": ("valid", None), "test": ("test", None), "test_warm": ("test", False), "test_cold": ("test", True),
}


@dataclass(frozen=True)
class RankedCases:
    """Per case, for one protocol: the target's 0-based rank and the top-k recommended items."""

    ranks: np.ndarray
    top: np.ndarray


def build_scorers(params: Params, split: Split, embeddings: np.ndarray) -> dict[str, list[Scorer]]:
    """Per case split, every recommender to evaluate: the single scorers, then their fusion.

    Every scorer is fit on what is known when that split's cases are scored: the baselines by
    `known_before`, the models by train.final_epochs (valid: the selected checkpoints; test: the
    final ones, which also trained on the valid items). The fusion combines the baselines with
    the served model, the cold-start one (it also ranks new products); the trained model alone is
    reported beside it. The fusion's weights are tuned on valid and applied unchanged to the
    test-time scorers.
    """
    models = {"valid": (model_path(params), cold_model_path(params)),             # selected on valid
              "test": (final_model_path(params), final_cold_model_path(params))}   # after train.final_epochs
    trained = {name: load_model_scorer(params, paths[0]) for name, paths in models.items()}
    fused = {name: [LastBatchScores(s) for s in fused_scorers(fit_baselines(params.baselines, known_before(split, name)),
                                                              embeddings, params.baselines,
                                                              load_model_scorer(params, models[name][1], COLD_MODEL_SCORER_NAME))]
             for name in CASE_SPLITS}
    valid = split.cases[split.cases["split"] == "valid"]
    tuned = tune_fusion(fused["valid"], list(valid["history"]), valid["target"].to_numpy(), params.fusion,
                        params.evaluate.batch_size)
    return {name: [*scorers, trained[name], FusionScorer(scorers, tuned.weights, cold_offset=tuned.cold_offset)]
            for name, scorers in fused.items()}


class LastBatchScores:
    """A scorer that keeps the scores of the last batch it was asked for. The evaluation ranks
    each batch with every scorer, the fusion's parts before the fusion, so the fusion reads their
    scores instead of computing them again."""

    def __init__(self, scorer: Scorer):
        self.scorer, self.name = scorer, scorer.name
        self._histories: Sequence[Sequence[int]] | None = None
        self._scores: np.ndarray | None = None

    def __getattr__(self, attribute: str):         # what else the fusion reads of it (known items)
        return getattr(self.scorer, attribute)

    def score(self, histories: Sequence[Sequence[int]]) -> np.ndarray:
        if histories is not self._histories:      # the same batch is the same object (rank_cases_by_scorer)
            self._histories, self._scores = histories, self.scorer.score(histories)
        return self._scores


def rank_cases(scorer: Scorer, histories: Sequence[Sequence[int]], targets: np.ndarray,
               cfg: EvaluateParams) -> dict[str, RankedCases]:
    """Rank every case's target under each protocol, in batches of cfg.batch_size shoppers."""
    return rank_cases_by_scorer([scorer], histories, targets, cfg)[0]


def rank_cases_by_scorer(scorers: Sequence[Scorer], histories: Sequence[Sequence[int]], targets: np.ndarray,
                         cfg: EvaluateParams) -> list[dict[str, RankedCases]]:
    """rank_cases for each scorer, a batch at a time with all of them (see LastBatchScores)."""
    ranks = [{p: [] for p in PROTOCOLS} for _ in scorers]
    tops = [{p: [] for p in PROTOCOLS} for _ in scorers]
    for chunk in batch_slices(len(histories), cfg.batch_size):
        hist, tgt = histories[chunk], targets[chunk]
        for i, scorer in enumerate(scorers):
            scores = scorer.score(hist)
            if np.isnan(scores).any():
                raise ValueError(f"scorer {scorer.name} returned NaN scores; fix the scorer, NaN cannot be ranked")
            for protocol in PROTOCOLS:
                ranked = apply_protocol(scores, hist, tgt, protocol)
                ranks[i][protocol].append(target_ranks(ranked, tgt))
                tops[i][protocol].append(top_k_items(ranked, cfg.beyond_k))
    return [{p: RankedCases(np.concatenate(r[p]), np.concatenate(t[p])) for p in PROTOCOLS}
            for r, t in zip(ranks, tops)]


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


def rank_all_cases(scorers: dict[str, Sequence[Scorer]], cases: pd.DataFrame,
                   cfg: EvaluateParams) -> list[dict[str, RankedCases]]:
    """Rank every case (in `cases` order) with each of the scorers fit for its split (the same
    recommenders in the same order for every split)."""
    parts = {}
    for name, fitted in scorers.items():
        rows = np.flatnonzero((cases["split"] == name).to_numpy())
        if len(rows):
            parts[name] = (rows, rank_cases_by_scorer(fitted, list(cases["history"].iloc[rows]),
                                                      cases["target"].to_numpy()[rows], cfg))
    order = np.argsort(np.concatenate([rows for rows, _ in parts.values()]))
    if len(order) != len(cases):
        raise ValueError(f"every case needs a scorer for its split; scorers given for {sorted(scorers)}")
    n_scorers = len(next(iter(scorers.values())))
    return [{p: RankedCases(np.concatenate([r[i][p].ranks for _, r in parts.values()])[order],
                            np.concatenate([r[i][p].top for _, r in parts.values()])[order]) for p in PROTOCOLS}
            for i in range(n_scorers)]


def evaluate_scorers(scorers: dict[str, Sequence[Scorer]], split: Split, cfg: EvaluateParams) -> dict:
    """{protocol: {subset: {scorer: metrics}}} plus the number of cases per subset.

    `scorers` holds, per case split, the same recommenders in the same order (fit for that split).
    """
    n_items = len(split.item_index)
    self_info = item_self_information(train_counts(split), cfg.novelty_pseudocount)
    cases = split.cases.reset_index(drop=True)
    masks = subset_masks(cases)
    results: dict = {p: {s: {} for s in masks} for p in PROTOCOLS}
    for fitted, ranked in zip(zip(*scorers.values()), rank_all_cases(scorers, cases, cfg)):
        name = fitted[0].name
        for protocol in PROTOCOLS:
            for subset, mask in masks.items():
                part = RankedCases(ranked[protocol].ranks[mask], ranked[protocol].top[mask])
                results[protocol][subset][name] = summarise(part, cfg, n_items, self_info)
        if HEADLINE_SUBSET in masks:
            log.info("%s on %s (%s): %s", name, HEADLINE_SUBSET, HEADLINE_PROTOCOL,
                     results[HEADLINE_PROTOCOL][HEADLINE_SUBSET][name])
    results["cases"] = {subset: int(mask.sum()) for subset, mask in masks.items()}
    return results


PROTOCOL_PEERS = "protocol_peers"   # results key: the test figures under the published peers' protocol
SETTINGS = {
    "deployed": "top-level figures: the final models (trained on every shopper's valid item too, "
                "train.final_epochs and train.final_newest_passes) and baselines counting the valid items: what is served",
    PROTOCOL_PEERS: "the models selected on valid and baselines fitted on the training interactions only, "
                    "tested once: the published peers' protocol",
}


def protocol_peers(scorers: dict[str, Sequence[Scorer]], split: Split, cfg: EvaluateParams) -> dict:
    """The test cases ranked by the recommenders fitted for valid (train only): evaluate_scorers'
    figures for the test subsets under the peers' protocol."""
    test = Split(split.item_index, split.train, split.cases[split.cases["split"] == "test"])
    return evaluate_scorers({"test": scorers["valid"]}, test, cfg)


def popularity_check(split: Split, cfg: EvaluateParams) -> dict:
    """Popularity on the test cases with items counted over every interaction, test targets
    included. That leaks the test, so it is no result, but it is how the published Pop row is
    computed: figures close to it mean our split and metric are the published ones."""
    counts = train_counts(split) + np.bincount(split.cases["target"].to_numpy(), minlength=len(split.item_index) + 1)
    test = split.cases[split.cases["split"] == "test"]
    ranked = rank_cases(PopularityScorer(counts), list(test["history"]), test["target"].to_numpy(), cfg)
    summary = ranking_summary(ranked[HEADLINE_PROTOCOL].ranks, cfg.ks)
    return {"protocol": HEADLINE_PROTOCOL, "counts": "all interactions, test targets included (leaks the test)",
            **{name: round(value, 6) for name, value in summary.items()}}


def comparison_table(results: dict, subset: str = "test") -> pd.DataFrame:
    """One row per (model, protocol) on a subset: the per-model comparison DVC plots."""
    rows = [{"label": f"{model} ({protocol})", "model": model, "protocol": protocol, **metrics}
            for protocol in PROTOCOLS for model, metrics in results[protocol][subset].items()]
    return pd.DataFrame(rows)


def evaluate(params: Params) -> dict:
    """Fit, tune and evaluate every scorer; write ranking metrics, comparison CSV and HTML report."""
    split = load_split(params)
    start = time.monotonic()
    scorers = build_scorers(params, split, load_item_embeddings(params))
    fitted = time.monotonic()
    results = evaluate_scorers(scorers, split, params.evaluate)
    results[PROTOCOL_PEERS] = protocol_peers(scorers, split, params.evaluate)
    results["settings"] = SETTINGS
    # where evaluation's time goes: fitting the baselines and tuning the fusion on valid, then
    # ranking every case with every scorer
    results["seconds"] = {"fit_and_tune": round(fitted - start, 1), "rank": round(time.monotonic() - fitted, 1)}
    fusion = next(s for s in scorers["test"] if isinstance(s, FusionScorer))
    fusion_weights = fusion.weight_by_name
    results["fusion_weights"], results["fusion_cold_offset"] = fusion_weights, fusion.cold_offset
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


def run(params: Params) -> dict:
    """Pipeline step `evaluate`: the headline figures (unmasked, test) of every model."""
    return evaluate(params)[HEADLINE_PROTOCOL][HEADLINE_SUBSET]
