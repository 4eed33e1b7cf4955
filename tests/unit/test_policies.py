"""Every policy's propensities are the probabilities it actually draws with: checked against
empirical frequencies over many seeded draws, at the first position and given the first item."""
from __future__ import annotations

from collections import Counter

import numpy as np
import pytest
from scipy import stats

from components.serving.policies import EpsilonGreedy, Greedy, Softmax, Thompson, beta_draws, candidates, prob_highest

SCORES = np.array([-np.inf, 2.0, 1.5, 1.4, 0.3, -0.5, -np.inf, 0.9])   # 0 = padding, 6 = hidden
DRAWS = 6000
POLICIES = {
    "epsilon_greedy": EpsilonGreedy(epsilon=0.3, pool=5),
    "softmax": Softmax(temperature=0.7, pool=5),
    "thompson": Thompson(clicks=np.array([0, 9, 3, 1, 4, 0, 0, 2]), shows=np.array([0, 30, 20, 5, 12, 3, 0, 10]),
                         prior_rate=0.3, prior_shows=4.0, temperature=1.0, pool=5, grid=1024),
}


def close(frequency: float, probability: float, n: int) -> bool:
    """Within 4.5 binomial standard errors (plus the quadrature's slack)."""
    return abs(frequency - probability) <= 4.5 * np.sqrt(probability * (1 - probability) / n) + 2e-3


def test_candidates_are_the_pool_best_finite_scores():
    assert candidates(SCORES, 4).tolist() == [1, 2, 3, 7]


def test_candidates_break_ties_by_the_lower_index_among_mostly_unscored_items():
    row = np.full(1000, -np.inf)
    row[[900, 40, 41, 700, 5]] = [3.0, 1.0, 2.0, 1.0, 1.0]
    assert candidates(row, 3).tolist() == [900, 41, 5]
    assert candidates(row, 10).tolist() == [900, 41, 5, 40, 700]   # fewer finite than the pool: all of them


def test_greedy_shows_the_best_with_certainty():
    slate = Greedy().draw(SCORES, 3, np.random.default_rng(0))
    assert slate.items.tolist() == [1, 2, 3] and slate.propensities.tolist() == [1, 1, 1]


@pytest.mark.parametrize("name", POLICIES)
def test_propensities_match_empirical_frequencies(name):
    policy, rng = POLICIES[name], np.random.default_rng(7)
    slates = [policy.draw(SCORES, 3, rng) for _ in range(DRAWS)]
    assert all(set(s.items) <= {1, 2, 3, 4, 7} and len(set(s.items)) == 3 for s in slates)   # pool, no repeats
    recorded: dict[tuple, float] = {}
    for s in slates:
        for p in range(3):
            key = (tuple(s.items[:p]), int(s.items[p]))
            assert recorded.setdefault(key, s.propensities[p]) == pytest.approx(s.propensities[p])  # one value a case
    first = Counter(int(s.items[0]) for s in slates)
    for item, count in first.items():
        assert close(count / DRAWS, recorded[((), item)], DRAWS), (item, count / DRAWS, recorded[((), item)])
    after_best = [s for s in slates if s.items[0] == 1]
    second = Counter(int(s.items[1]) for s in after_best)
    for item, count in second.items():
        assert close(count / len(after_best), recorded[((1,), item)], len(after_best))
    assert sum(recorded[((), i)] for i in first) == pytest.approx(1.0, abs=1e-6) or len(first) < 5


def test_probability_of_being_highest_sums_to_one_and_orders_by_mean():
    p = prob_highest(np.array([10.0, 2.0, 2.0]), np.array([2.0, 10.0, 10.0]), grid=2048)
    assert p.sum() == pytest.approx(1.0) and p[0] > 0.99 and p[1] == pytest.approx(p[2])


def test_thompson_without_feedback_follows_the_scores_and_feedback_moves_it():
    pool = candidates(SCORES, 5)
    zero = np.zeros(len(SCORES))
    prior = Thompson(zero, zero, prior_rate=0.1, prior_shows=20.0, temperature=1.0, pool=5, grid=1024)
    p = prob_highest(*prior.posterior(SCORES, pool), grid=1024)
    assert list(np.argsort(-p)) == list(range(5))        # the model's order leads while nothing is known
    clicked = np.where(np.arange(len(SCORES)) == 4, 30.0, 0.0)    # item 4 (ranked 5th) clicked 30 of 40
    shown = np.where(np.arange(len(SCORES)) == 4, 40.0, 0.0)
    learnt = Thompson(clicked, shown, prior_rate=0.1, prior_shows=20.0, temperature=1.0, pool=5, grid=1024)
    assert np.argmax(prob_highest(*learnt.posterior(SCORES, pool), grid=1024)) == list(pool).index(4)


@pytest.mark.parametrize("most_shows", [400, 100_000])
def test_probability_of_being_highest_matches_draws_for_a_served_pool(most_shows):
    """A pool as served (50 items on 512 cells, priors from the scores): with little feedback the
    posteriors are wide, with much of it (an item shown for months) narrower than a cell of (0, 1)."""
    rng = np.random.default_rng(3)
    shows = rng.integers(0, most_shows, 50)
    mean = 0.05 * np.exp(np.sort(rng.normal(0.0, 1.0, 50)) - 1.5)
    clicks = rng.binomial(shows, 0.04)
    alpha, beta = 100 * mean + clicks, 100 * (1 - mean) + shows - clicks
    p, n = prob_highest(alpha, beta, grid=512), 200_000
    frequency = np.bincount(rng.beta(alpha, beta, size=(n, 50)).argmax(1), minlength=50) / n
    assert all(close(f, q, n) for f, q in zip(frequency, p)), np.abs(frequency - p).max()


@pytest.mark.parametrize("alpha, beta", [(2.0, 30.0), (4_000.0, 96_000.0), (0.5, 0.5)])
def test_thompsons_beta_draws_follow_the_distribution_and_take_one_uniform_each(alpha, beta):
    """Wide, narrow (an item shown for months) and U-shaped posteriors: the draws are Beta draws,
    and parameters however different take the same uniforms from the stream (rng.beta's rejection
    sampling took as many as its tries), so a slate cannot shift with a prior's float rounding."""
    draws = beta_draws(np.full(20_000, alpha), np.full(20_000, beta), np.random.default_rng(0))
    assert stats.kstest(draws, stats.beta(alpha, beta).cdf).pvalue > 1e-3
    streams = [np.random.default_rng(5) for _ in range(2)]
    beta_draws(np.full(50, alpha), np.full(50, beta), streams[0])
    beta_draws(np.full(50, 3 * alpha), np.full(50, beta / 3), streams[1])
    assert streams[0].random() == streams[1].random()
