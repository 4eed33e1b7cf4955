"""`interest gate`: may the newly registered version replace the one in production?

Both versions are scored by the same code (each one's served recommender, in process) on the
same held-out cases: the newest data version's test cases (but those whose target is accepted
feedback, which production's own slates made possible), read as item ids so that versions
trained on other catalogues are comparable (history items a version does not know are left out
of its histories; a target it does not know is a miss). The candidate is promoted only when
neither its NDCG@10 nor its Recall@10 on cases whose target is a new (cold) product is worse than
production's beyond the relative tolerances in gate.* (new products pass too when they reach
gate.cold_warm_floor of the candidate's own warm-target Recall@10: a production version that
over-exposes new products at warm items' expense must not lock better models out, or when
production's lead on them is within the noise of their few cases: a paired bootstrap, one-sided
p above gate.alpha), nor, where the feedback store holds logged
slates that cover both versions' slates, its off-policy clicks per shown item (SNIPS,
components.evaluation.off_policy); with no production version yet, the first
candidate is promoted. The decision and every figure go to gate.metrics_file and to the
candidate's metadata in the model store. Running it again for the same candidate decides nothing
new (a retried task promotes nothing twice).
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

import numpy as np
import pandas as pd

from components.core.config.schema import Params
from components.core.errors import InterestError
from components.core.io import read_json, write_json
from components.data.feedback_data import read_feedback
from components.data.split import load_split
from components.evaluation.metrics import HEADLINE_PROTOCOL, HEADLINE_SUBSET, case_metrics
from components.evaluation.ranking import rank_cases
from components.feedback.store import open_store
from components.registry.promotion import production_tag, promote
from components.registry.store import model_store, without_none
from components.evaluation.off_policy import slate_snips
from components.evaluation.significance import paired_lead_p
from components.feedback.events import CLICK
from components.serving.policies import GREEDY
from components.serving.recommender import Recommender, load_recommender

log = logging.getLogger(__name__)
K = 10
PROMOTED, REFUSED, UNCHANGED = "promoted", "refused", "already in production"


def held_out_cases(params: Params) -> tuple[pd.DataFrame, int]:
    """The newest split's test cases as item ids (gate.cases of them; 0 = all), without those whose
    target is accepted feedback: a click on a slate production chose favours production, which
    decided what could be clicked. Returns the cases and how many were left out."""
    cases = load_split(params).cases_as_ids(HEADLINE_SUBSET)
    feedback, _ = read_feedback(params.path(params.ingest.feedback_dir))
    logged = pd.MultiIndex.from_frame(feedback[["user", "item"]].astype(str))
    from_feedback = pd.MultiIndex.from_arrays([cases["user"].astype(str), cases["target"].astype(str)]).isin(logged)
    cases = cases[~from_feedback]
    return (cases.head(params.gate.cases) if params.gate.cases else cases), int(from_feedback.sum())


@dataclass(frozen=True)
class CaseResults:
    """One version's results on the gate's cases, case by case (paired with the other version's)."""
    ndcg: np.ndarray      # NDCG@10 per case
    recall: np.ndarray    # Recall@10 per case (hit or miss)
    cold: np.ndarray      # bool: the target is a new product

    def figures(self) -> dict[str, float | int | None]:
        """NDCG@10 over all cases and Recall@10 over cold- and warm-target cases."""
        cold = self.cold
        return {f"ndcg@{K}": round(float(self.ndcg.mean()), 6),
                f"cold_recall@{K}": round(float(self.recall[cold].mean()), 6) if cold.any() else None,
                f"warm_recall@{K}": round(float(self.recall[~cold].mean()), 6) if (~cold).any() else None,
                "cases": int(len(cold)), "cold_cases": int(cold.sum())}


def case_results(recommender: Recommender, cases: pd.DataFrame, params: Params) -> CaseResults:
    """The version's rank of every case's target, as `evaluate` ranks them."""
    histories = [recommender.known_indices(h) for h in cases["history"]]
    targets = np.array([(recommender.known_indices([t]) or [0])[0] for t in cases["target"]])   # 0 ranks last: a miss
    ranks = rank_cases(recommender, histories, targets, params.evaluate)[HEADLINE_PROTOCOL].ranks
    per_case = case_metrics(ranks, [K])
    return CaseResults(per_case[f"ndcg@{K}"], per_case[f"recall@{K}"], cases["target_is_cold"].to_numpy(bool))


def _logged_impressions(slates: pd.DataFrame, events: pd.DataFrame) -> pd.DataFrame:
    """One row per shown item of a slate with a shopper: request_id, user, item, propensity, clicked."""
    rows = [(s.request_id, s.user, str(item), float(propensity))
            for s in slates.itertuples() if s.user for item, _, propensity in s.items]
    shown = pd.DataFrame(rows, columns=["request_id", "user", "item", "propensity"]).query("propensity > 0")
    clicks = events[events["kind"] == CLICK]
    clicked = set(zip(clicks["request_id"], clicks["item"].astype(str)))
    return shown.assign(clicked=[(r, i) in clicked for r, i in zip(shown["request_id"], shown["item"])])


def off_policy(params: Params, versions: dict[str, Recommender]) -> dict[str, Any] | None:
    """Each version's SNIPS clicks per shown item on the newest gate.ope_slates logged slates (the
    feedback store), its greedy slate built from the history production knew; None without logs."""
    store = open_store(params)
    try:
        slates = store.newest_shopper_slates(params.gate.ope_slates)
        events = store.events_between(float(slates["served_at"].min()), time.time()) if len(slates) else slates
    finally:
        store.close()
    if slates.empty:
        return None
    impressions = _logged_impressions(slates, events)
    if impressions.empty:
        return None
    context = versions.get("production") or versions["candidate"]
    histories = {user: context.user_history(user) for user in impressions["user"].unique() if context.knows_shopper(user)}
    impressions = impressions[impressions["user"].isin(histories)]
    out: dict[str, Any] = {"slates": int(impressions["request_id"].nunique()), "impressions": len(impressions),
                           "logged_ctr": round(float(impressions["clicked"].mean()), 6) if len(impressions) else None}
    for name, version in versions.items():
        slates_of = {user: set(map(str, version.rank(items=history, k=params.serving.top_k, policy=GREEDY).items))
                     for user, history in histories.items()}
        out[name] = slate_snips(impressions, slates_of)
    return out


def not_worse(candidate_cases: CaseResults, production_cases: CaseResults, params: Params) -> tuple[bool, list[str]]:
    """Whether the candidate passes, and the reasons when it does not."""
    candidate, production, cfg = candidate_cases.figures(), production_cases.figures(), params.gate
    reasons = []
    for key, tolerance in ((f"ndcg@{K}", cfg.ndcg_tolerance), (f"cold_recall@{K}", cfg.cold_recall_tolerance)):
        if candidate[key] is None or production[key] is None:
            continue
        floor = production[key] * (1 - tolerance)
        if candidate[key] >= floor:
            continue
        reason = f"{key} {candidate[key]:.4f} < {floor:.4f} (production {production[key]:.4f} less {tolerance:.0%})"
        if key == f"cold_recall@{K}":
            if (warm := candidate[f"warm_recall@{K}"]) and candidate[key] >= (own_floor := cfg.cold_warm_floor * warm):
                continue
            cold = production_cases.cold
            p = paired_lead_p(production_cases.recall[cold], candidate_cases.recall[cold], cfg.bootstrap, cfg.seed)
            if p > cfg.alpha:
                log.info("gate: production's lead on new products is within noise (%d cases, p %.2f)", cold.sum(), p)
                continue
            reason += (f" and < {own_floor:.4f} ({cfg.cold_warm_floor:.0%} of its warm-target {warm:.4f})" if warm else "") + \
                f", beyond the noise of {cold.sum()} cases (paired bootstrap p {p:.3f})"
        reasons.append(reason)
    return not reasons, reasons


def off_policy_worse(estimates: dict[str, Any] | None, params: Params) -> list[str]:
    """A reason to refuse when the logs cover both versions' slates enough (gate.ope_min_support)
    and the candidate's estimated clicks per shown item are below production's beyond gate.ope_tolerance."""
    if not estimates:
        return []
    candidate, production = estimates["candidate"], estimates["production"]
    if min(candidate["support"] or 0, production["support"] or 0) < params.gate.ope_min_support \
            or candidate["value"] is None or production["value"] is None:
        return []
    floor = production["value"] * (1 - params.gate.ope_tolerance)
    return [f"off-policy clicks per shown item {candidate['value']:.4f} < {floor:.4f} (production "
            f"{production['value']:.4f} less {params.gate.ope_tolerance:.0%})"] if candidate["value"] < floor else []


def gate(params: Params) -> dict[str, Any]:
    record_file = params.path(params.registry.record_file)
    if not record_file.is_file():
        raise InterestError(f"no registered candidate ({record_file} is missing): run `interest register` first")
    candidate_tag = read_json(record_file)["tag"]
    production = production_tag(params)
    decision: dict[str, Any] = {"candidate": candidate_tag, "production": production,
                                "at": datetime.now(timezone.utc).isoformat(timespec="seconds")}
    if production == candidate_tag:
        decision.update(decision=UNCHANGED, reasons=[])
    else:
        cases, decision["feedback_cases_left_out"] = held_out_cases(params)
        versions = {"candidate": load_recommender(params, candidate_tag)}
        if production is not None:
            versions["production"] = load_recommender(params, production)
        results = {name: case_results(version, cases, params) for name, version in versions.items()}
        for name, result in results.items():
            decision[f"{name}_figures"] = result.figures()
        decision["off_policy"] = off_policy(params, versions)
        if production is None:
            decision.update(decision=PROMOTED, reasons=["no production version yet"])
        else:
            passed, reasons = not_worse(results["candidate"], results["production"], params)
            reasons += off_policy_worse(decision["off_policy"], params)
            decision.update(decision=PROMOTED if not reasons else REFUSED, reasons=reasons)
        _record_on_candidate(params, candidate_tag, decision)
        if decision["decision"] == PROMOTED:
            promote(params, candidate_tag, reason=f"gate: {'; '.join(decision['reasons']) or 'not worse'}")
    write_json(decision, params.path(params.gate.metrics_file))
    log.info("gate: %s %s (production was %s)", candidate_tag, decision["decision"], production)
    return decision


def _record_on_candidate(params: Params, tag: str, decision: dict[str, Any]) -> None:
    stored = model_store(params).get(tag)
    stored.info.metadata["gate"] = without_none({k: v for k, v in decision.items() if k != "candidate"})
    stored.flush()


def run(params: Params) -> dict[str, Any]:
    decision = gate(params)
    return {"outputs": {"gate": str(params.path(params.gate.metrics_file))}, **decision}
