"""Off-policy evaluation: a policy's value from another policy's logs, before it serves anyone.

Bandit estimators (one logged action per round, `BanditLog`): inverse propensity scoring (IPS),
its self-normalised form (SNIPS), the direct method (DM: a reward model averaged over the target
policy's actions) and doubly robust (DR: DM plus IPS of the reward model's residuals).

The service's slates (`slate_snips`, the gate's estimate): each logged impression is an item the logging policy showed with a known propensity, clicked or
not. A deterministic target policy (a version's greedy top-k for the same shopper) is credited
with the logged impressions of the items it would show as well, each weighted by one over its
logging propensity; the self-normalised estimate (SNIPS) is its clicks per shown item. Items the
logs never showed carry no evidence, so `support` (the share of the target's slate items that
were logged) says how much of the target policy the estimate covers.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

def slate_snips(impressions: pd.DataFrame, target_slates: dict[str, set[str]]) -> dict:
    """The target's clicks per shown item, from the impressions it would have shown too;
    target_slates: the target's slate per shopper."""
    would_show = np.array([item in target_slates.get(user, ()) for user, item in
                           zip(impressions["user"], impressions["item"])], dtype=bool)
    weights = would_show / impressions["propensity"].to_numpy()
    shown = sum(len(items) for items in target_slates.values())
    covered = sum(len(items & set(impressions.loc[impressions["user"] == user, "item"]))
                  for user, items in target_slates.items())
    return {"value": round(float((weights * impressions["clicked"]).sum() / weights.sum()), 6) if weights.sum() else None,
            "matched_impressions": int(would_show.sum()), "support": round(covered / shown, 6) if shown else None}



@dataclass(frozen=True)
class BanditLog:
    """n logged rounds: the action taken, its reward and logging propensity; the target policy's
    distribution over actions and the reward model's estimate of every action, per round."""
    action: np.ndarray        # [n] index of the logged action
    reward: np.ndarray        # [n]
    propensity: np.ndarray    # [n] logging policy's probability of the logged action
    target: np.ndarray        # [n, n_actions] target policy's probabilities
    q_hat: np.ndarray         # [n, n_actions] estimated expected reward

    def weights(self) -> np.ndarray:
        return self.target[np.arange(len(self.action)), self.action] / self.propensity

    def take(self, rows: np.ndarray) -> "BanditLog":
        return BanditLog(self.action[rows], self.reward[rows], self.propensity[rows], self.target[rows], self.q_hat[rows])


def ips(log: BanditLog) -> float:
    return float(np.mean(log.weights() * log.reward))


def snips(log: BanditLog) -> float:
    w = log.weights()
    return float(np.sum(w * log.reward) / np.sum(w))


def direct_method(log: BanditLog) -> float:
    return float(np.mean(np.sum(log.target * log.q_hat, axis=1)))


def doubly_robust(log: BanditLog) -> float:
    logged_q = log.q_hat[np.arange(len(log.action)), log.action]
    return direct_method(log) + float(np.mean(log.weights() * (log.reward - logged_q)))


ESTIMATORS = {"ips": ips, "snips": snips, "dm": direct_method, "dr": doubly_robust}


def estimate(log: BanditLog, bootstrap: int, alpha: float, rng: np.random.Generator) -> dict[str, dict]:
    """Each estimator's value and its bootstrap (1 - alpha) interval over the logged rounds."""
    draws = {name: [] for name in ESTIMATORS}
    for _ in range(bootstrap):
        sample = log.take(rng.integers(0, len(log.action), len(log.action)))
        for name, estimator in ESTIMATORS.items():
            draws[name].append(estimator(sample))
    return {name: {"value": estimator(log), "interval": [float(np.quantile(draws[name], alpha / 2)),
                                                         float(np.quantile(draws[name], 1 - alpha / 2))]}
            for name, estimator in ESTIMATORS.items()}
