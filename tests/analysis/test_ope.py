"""Off-policy estimators: on a synthetic bandit whose true value is known, each estimator's
bootstrap interval holds the truth (DR even with a useless reward model); on the same inputs they
equal the published Open Bandit Pipeline's (obp 0.4.1); on the real Open Bandit Dataset, from the
uniform-random logs, each interval but DM's holds Thompson sampling's own CTR."""
from __future__ import annotations

import numpy as np
import pytest
from obp.ope import DirectMethod, DoublyRobust, InverseProbabilityWeighting, SelfNormalizedInverseProbabilityWeighting

from components.analysis.ope import ope_check
from components.core.config.loader import load_params
from components.core.io import read_json
from components.evaluation.off_policy import ESTIMATORS, BanditLog, estimate
from tests.conftest import ROOT

N, K = 20_000, 8


def synthetic(seed: int) -> tuple[BanditLog, float, np.ndarray]:
    """Contextual rounds: click probabilities mu[x, a], a softmax logging policy, another target
    policy. Returns the log (reward model = mu), the target's true value, and mu."""
    rng = np.random.default_rng(seed)
    mu = rng.uniform(0.01, 0.2, (N, K))
    logging = rng.dirichlet(np.ones(K) * 2, N)
    target = np.exp(5 * mu) / np.exp(5 * mu).sum(axis=1, keepdims=True)
    action = np.array([rng.choice(K, p=p) for p in logging])
    reward = (rng.random(N) < mu[np.arange(N), action]).astype(float)
    log = BanditLog(action, reward, logging[np.arange(N), action], target, mu)
    return log, float(np.mean(np.sum(target * mu, axis=1))), mu


def test_every_estimator_holds_the_true_value_in_its_interval():
    log, truth, _ = synthetic(0)
    found = estimate(log, bootstrap=300, alpha=0.01, rng=np.random.default_rng(1))
    for name, figures in found.items():
        assert figures["interval"][0] <= truth <= figures["interval"][1], (name, figures, truth)
    useless = BanditLog(log.action, log.reward, log.propensity, log.target, np.zeros_like(log.q_hat))
    dr = estimate(useless, bootstrap=300, alpha=0.01, rng=np.random.default_rng(2))["dr"]
    assert dr["interval"][0] <= truth <= dr["interval"][1]   # doubly robust: a wrong model, still unbiased


def test_estimators_equal_the_open_bandit_pipeline():
    log, _, mu = synthetic(3)
    inputs = dict(reward=log.reward, action=log.action, position=np.zeros(N, dtype=int), pscore=log.propensity,
                  action_dist=log.target[:, :, None])
    theirs = {"ips": InverseProbabilityWeighting().estimate_policy_value(**inputs),
              "snips": SelfNormalizedInverseProbabilityWeighting().estimate_policy_value(**inputs),
              "dm": DirectMethod().estimate_policy_value(
                  position=inputs["position"], action_dist=inputs["action_dist"],
                  estimated_rewards_by_reg_model=mu[:, :, None]),
              "dr": DoublyRobust().estimate_policy_value(**inputs, estimated_rewards_by_reg_model=mu[:, :, None])}
    assert {name: pytest.approx(value, rel=1e-9) for name, value in theirs.items()} == \
        {name: estimator(log) for name, estimator in ESTIMATORS.items()}


def test_on_open_bandit_the_random_logs_estimate_thompson_samplings_ctr(tmp_path, mirror_dir):
    params = load_params(ROOT / "params.yaml", environ={"INTEREST__DATA__MIRROR_DIR": str(mirror_dir),
                                                        "INTEREST__OPE__METRICS_FILE": str(tmp_path / "ope.json"),
                                                        "INTEREST__OPE__BOOTSTRAP": "200"})
    result = ope_check(params)
    assert read_json(tmp_path / "ope.json") == result
    for campaign, figures in result["campaigns"].items():
        assert figures["rounds"] == 10_000 and figures["bts_rounds"] == 10_000
        for name in ("ips", "snips", "dr"):
            assert figures["estimators"][name]["truth_in_interval"], (campaign, name, figures["estimators"][name])
