"""`interest ope`: are the off-policy estimators right? Checked where the truth is known.

The Open Bandit Dataset logged the same campaign under two policies: uniform random and Bernoulli
Thompson sampling (BTS). From the random logs alone, each estimator (components.evaluation.off_policy)
estimates the CTR BTS would get; BTS's own logs give its true CTR. The target policy is BTS's
action distribution per position, read from its logs (how often it showed each item in each
position). The reward model of DM and DR is a logistic regression of click on item, position,
user features and user-item affinity, cross-fitted over ope.folds so that no round is scored by a
model fitted on it. Writes ope.metrics_file: per campaign and estimator, the estimate, its
bootstrap interval and the relative error against the truth.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import pandas as pd
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import KFold
from sklearn.preprocessing import OneHotEncoder

from components.core.config.schema import Params
from components.core.io import write_json
from components.data.sources.open_bandit import USER_FEATURES, read_campaign
from components.evaluation.off_policy import BanditLog, estimate

log = logging.getLogger(__name__)
RANDOM, BTS = "random", "bts"


def target_distribution(bts: pd.DataFrame, items: np.ndarray) -> pd.DataFrame:
    """P(item | position) under BTS: its share of BTS's rounds in that position."""
    counts = bts.groupby(["position", "item_id"]).size().unstack(fill_value=0).reindex(columns=items, fill_value=0)
    return counts.div(counts.sum(axis=1), axis=0)


@dataclass(frozen=True)
class Design:
    """What the reward model reads of a round, for any item: the item and position one-hot, the
    user features one-hot, and the user's affinity to that item."""
    items: np.ndarray          # item ids, column order of the actions
    users: np.ndarray          # [n, user one-hot]
    affinity: np.ndarray       # [n, n_items]
    position: np.ndarray       # [n, 3] one-hot

    def rows(self, rows: np.ndarray, item_idx: np.ndarray) -> np.ndarray:
        return np.hstack([np.eye(len(self.items))[item_idx], self.position[rows], self.users[rows],
                          self.affinity[rows, item_idx][:, None]])


def design(logs: pd.DataFrame, items: np.ndarray) -> Design:
    users = OneHotEncoder(handle_unknown="ignore").fit_transform(logs[USER_FEATURES].astype(str)).toarray()
    affinity = logs.reindex(columns=[f"user-item_affinity_{i}" for i in items]).fillna(0.0).to_numpy(float)
    positions = np.sort(logs["position"].unique())
    return Design(items, users, affinity, (logs["position"].to_numpy()[:, None] == positions[None, :]).astype(float))


def reward_model(logs: pd.DataFrame, items: np.ndarray, folds: int, seed: int) -> np.ndarray:
    """[n, n_items] click probability of every item in every round, cross-fitted: a round is scored
    by a model fitted on the other folds."""
    d = design(logs, items)
    index = {item: j for j, item in enumerate(items)}
    logged = logs["item_id"].map(index).to_numpy()
    q_hat = np.zeros((len(logs), len(items)))
    for fit, score in KFold(folds, shuffle=True, random_state=seed).split(logged):
        model = LogisticRegression(max_iter=2000).fit(d.rows(fit, logged[fit]), logs["click"].to_numpy()[fit])
        for j in range(len(items)):
            q_hat[score, j] = model.predict_proba(d.rows(score, np.full(len(score), j)))[:, 1]
    return q_hat


def campaign_check(params: Params, campaign: str, rng: np.random.Generator) -> dict:
    """The estimators on one campaign's random logs against BTS's true CTR."""
    cfg = params.ope
    folder = params.path(params.data.mirror_dir) / cfg.mirror_folder
    random, bts = read_campaign(folder, RANDOM, campaign), read_campaign(folder, BTS, campaign)
    items = np.sort(random["item_id"].unique())
    target = target_distribution(bts, items).reindex(random["position"].unique(), fill_value=0.0)
    bandit = BanditLog(action=random["item_id"].map({item: j for j, item in enumerate(items)}).to_numpy(),
                       reward=random["click"].to_numpy(float), propensity=random["propensity_score"].to_numpy(float),
                       target=target.loc[random["position"]].to_numpy(float),
                       q_hat=reward_model(random, items, cfg.folds, cfg.seed))
    truth = float(bts["click"].mean())
    estimates = estimate(bandit, cfg.bootstrap, cfg.alpha, rng)
    for figures in estimates.values():
        figures["relative_error"] = abs(figures["value"] - truth) / truth
        figures["truth_in_interval"] = bool(figures["interval"][0] <= truth <= figures["interval"][1])
    log.info("OPE %s: BTS CTR %.5f; %s", campaign, truth,
             ", ".join(f"{k} {v['value']:.5f} (error {v['relative_error']:.1%})" for k, v in estimates.items()))
    return {"rounds": len(random), "items": len(items), "random_ctr": float(random["click"].mean()),
            "bts_ctr": truth, "bts_rounds": len(bts), "estimators": estimates}


def ope_check(params: Params) -> dict:
    rng = np.random.default_rng(params.ope.seed)
    result = {"bootstrap": params.ope.bootstrap, "alpha": params.ope.alpha, "folds": params.ope.folds,
              "campaigns": {c: campaign_check(params, c, rng) for c in params.ope.campaigns}}
    write_json(result, params.path(params.ope.metrics_file))
    return result
