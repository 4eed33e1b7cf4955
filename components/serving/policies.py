"""Explore / exploit: how a slate of k items is drawn from a shopper's scores, and with what
probability each item was shown, so that the logs serve off-policy evaluation.

A slate is drawn position by position. An item's propensity is the exact probability that the
policy put it at its position given the items before it; their product is the probability of
the whole ranked slate. Exploring policies draw from the `pool` best-scored items only (never
from items a request hides: those score -inf), so exploration stays among plausible products.

- greedy: the k best, propensity 1.
- epsilon_greedy: at each position the best remaining item with probability 1 - epsilon, else a
  uniformly random remaining pool item.
- softmax: Plackett-Luce over the pool, P(item) proportional to exp(score / temperature).
- thompson: at each position a fresh draw from every remaining pool item's Beta posterior of its
  click rate (a prior from its score + served impressions and clicks); the highest draw is
  shown. Its propensity is P(item's draw is the highest) = integral of f_item(x) * prod_j F_j(x)
  dx, by quadrature on serving.thompson_grid points.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, get_args

import numpy as np
from scipy.special import betaincinv

from components.core.config.schema import PolicyName

GREEDY, EPSILON_GREEDY, SOFTMAX, THOMPSON = get_args(PolicyName)
TINY = 1e-6   # smallest Beta parameter: a prior mean that underflows stays a valid distribution


@dataclass(frozen=True)
class Slate:
    items: np.ndarray          # item_idx in shown order
    propensities: np.ndarray   # P(items[p] at position p | items[:p]) under the policy that drew it


class Policy(Protocol):
    name: str

    def draw(self, scores: np.ndarray, k: int, rng: np.random.Generator) -> Slate: ...

    def reach(self, k: int) -> int:
        """How many of the best-scored items a draw of k can show: it never looks further."""


def candidates(scores: np.ndarray, pool: int) -> np.ndarray:
    """item_idx of the `pool` best finite scores, best first (ties: lower index first). The
    partial sort runs over the finite scores alone: over a row of mostly -inf (a kept shopper's
    few best scores) numpy's partition was ten times slower than over the whole catalogue."""
    scores = np.asarray(scores, dtype=np.float64)
    finite = np.flatnonzero(np.isfinite(scores))
    if pool < len(finite):   # a partial sort: a request ranks a few of many thousand items
        s = scores[finite]
        kth = np.partition(s, len(s) - pool)[len(s) - pool]          # the pool-th best score
        above = finite[s > kth]
        chosen = np.concatenate([above, finite[s == kth][: pool - len(above)]])
    else:
        chosen = finite
    return chosen[np.argsort(-scores[chosen], kind="stable")]


def drawing_pool(scores: np.ndarray, pool: int) -> np.ndarray:
    """The `pool` best items in item_idx order, for the policies that draw: a draw then lands on
    an item, not on a rank, so two nearly tied scores (6e-6 apart on the sample) that float
    rounding orders either way (a batched or a kept row) still give the same slate."""
    return np.sort(candidates(scores, pool))


@dataclass(frozen=True)
class Greedy:
    name: str = GREEDY

    def reach(self, k: int) -> int:
        return k

    def draw(self, scores: np.ndarray, k: int, rng: np.random.Generator) -> Slate:
        top = candidates(scores, k)
        return Slate(top, np.ones(len(top)))


@dataclass(frozen=True)
class EpsilonGreedy:
    epsilon: float
    pool: int
    name: str = EPSILON_GREEDY

    def reach(self, k: int) -> int:
        return self.pool

    def draw(self, scores: np.ndarray, k: int, rng: np.random.Generator) -> Slate:
        remaining = list(candidates(scores, self.pool))   # best first
        items, props = [], []
        while remaining and len(items) < k:
            explore = rng.random() < self.epsilon
            pick = sorted(remaining)[int(rng.integers(len(remaining)))] if explore else remaining[0]   # an item, not a rank
            props.append((1 - self.epsilon) * (pick == remaining[0]) + self.epsilon / len(remaining))
            remaining.remove(pick)
            items.append(pick)
        return Slate(np.array(items, dtype=np.int64), np.array(props))


@dataclass(frozen=True)
class Softmax:
    temperature: float
    pool: int
    name: str = SOFTMAX

    def reach(self, k: int) -> int:
        return self.pool

    def draw(self, scores: np.ndarray, k: int, rng: np.random.Generator) -> Slate:
        pool = drawing_pool(scores, self.pool)
        logits = np.asarray(scores, dtype=np.float64)[pool] / self.temperature
        weights = np.exp(logits - logits.max())
        items, props = [], []
        alive = np.ones(len(pool), dtype=bool)
        while alive.any() and len(items) < k:
            p = np.where(alive, weights, 0.0) / weights[alive].sum()
            pick = int(rng.choice(len(pool), p=p))
            items.append(pool[pick])
            props.append(p[pick])
            alive[pick] = False
        return Slate(np.array(items, dtype=np.int64), np.array(props))


SPAN_SDS = 10.0   # the cells span every posterior's mean +- this many standard deviations (within (0, 1))


def beta_on_grid(alpha: np.ndarray, beta: np.ndarray, grid: int) -> tuple[np.ndarray, np.ndarray]:
    """Beta(alpha_i, beta_i) discretised on `grid` cells of the pool's posterior range: each
    cell's share of the mass (the pdf at its midpoint, normalised) and the log cdf at the midpoint
    (the cells below plus half its own) [n, grid] each. A cumulative sum stands in for the
    incomplete beta function, most of a slate's time; cells over the range the posteriors span,
    not all of (0, 1), keep the narrow posteriors of much feedback many cells wide."""
    n = alpha + beta
    mean, sd = alpha / n, np.sqrt(alpha * beta / (n * n * (n + 1)))
    low, high = max(0.0, float(np.min(mean - SPAN_SDS * sd))), min(1.0, float(np.max(mean + SPAN_SDS * sd)))
    x = low + (np.arange(grid) + 0.5) / grid * (high - low)
    log_pdf = (alpha[:, None] - 1) * np.log(x) + (beta[:, None] - 1) * np.log1p(-x)
    mass = np.exp(log_pdf - log_pdf.max(1, keepdims=True))
    mass /= mass.sum(1, keepdims=True)
    return mass, np.log(np.maximum(np.cumsum(mass, 1) - mass / 2, 1e-300))


def highest(mass: np.ndarray, log_cdf: np.ndarray) -> np.ndarray:
    """P(draw i is the highest) = integral of f_i(x) * prod_(j != i) F_j(x) dx, summed over the
    cells of beta_on_grid."""
    others = np.exp(log_cdf.sum(0, keepdims=True) - log_cdf)
    p = (mass * others).sum(1)
    return p / p.sum()   # quadrature error spread evenly


def prob_highest(alpha: np.ndarray, beta: np.ndarray, grid: int) -> np.ndarray:
    """P(draw i is the highest) for independent Beta(alpha_i, beta_i) draws."""
    return highest(*beta_on_grid(alpha, beta, grid))


def beta_draws(alpha: np.ndarray, beta: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """One Beta(alpha_i, beta_i) draw each, by the inverse cdf of one uniform each: the draws move
    continuously with the parameters. rng.beta's rejection sampling takes as many uniforms as its
    tries, so a parameter 5e-6 away (a kept row's float rounding) could shift every later draw."""
    return betaincinv(alpha, beta, rng.random(len(alpha)))


@dataclass(frozen=True)
class Thompson:
    """Each pool item's click rate has a Beta posterior: a prior from its score, worth
    prior_shows impressions, whose mean is prior_rate for the best-scored item and falls by
    exp(score gap / temperature) below it (so without feedback the model's order still leads),
    updated by the served impressions and clicks (by item_idx)."""

    clicks: np.ndarray
    shows: np.ndarray
    prior_rate: float
    prior_shows: float
    temperature: float
    pool: int
    grid: int
    name: str = THOMPSON

    def reach(self, k: int) -> int:
        return self.pool

    def posterior(self, scores: np.ndarray, pool: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        s = np.asarray(scores, dtype=np.float64)[pool]
        mean = self.prior_rate * np.exp((s - s.max()) / self.temperature)
        clicks = np.minimum(self.clicks[pool], self.shows[pool]).astype(np.float64)
        alpha = self.prior_shows * mean + clicks
        beta = self.prior_shows * (1 - mean) + self.shows[pool] - clicks
        return np.maximum(alpha, TINY), np.maximum(beta, TINY)

    def draw(self, scores: np.ndarray, k: int, rng: np.random.Generator) -> Slate:
        pool = drawing_pool(scores, self.pool)
        alpha, beta = self.posterior(scores, pool)
        mass, log_cdf = beta_on_grid(alpha, beta, self.grid)   # once: each position reuses the rows left
        items, props = [], []
        alive = np.ones(len(pool), dtype=bool)
        while alive.any() and len(items) < k:
            live = np.flatnonzero(alive)
            at = int(np.argmax(beta_draws(alpha[live], beta[live], rng)))
            props.append(highest(mass[live], log_cdf[live])[at])
            items.append(pool[live[at]])
            alive[live[at]] = False
        return Slate(np.array(items, dtype=np.int64), np.array(props))
