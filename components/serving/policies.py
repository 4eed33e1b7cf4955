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
  click rate (prior + served feedback); the highest draw is shown. Its propensity is
  P(item's draw is the highest) = integral of f_item(x) * prod_j F_j(x) dx, by quadrature.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

import numpy as np
from scipy import special

GREEDY, EPSILON_GREEDY, SOFTMAX, THOMPSON = "greedy", "epsilon_greedy", "softmax", "thompson"
MEMO_ENTRIES = 10_000   # Thompson propensities kept per posterior (the same candidate sets recur)


@dataclass(frozen=True)
class Slate:
    items: np.ndarray          # item_idx in shown order
    propensities: np.ndarray   # P(items[p] at position p | items[:p]) under the policy that drew it


class Policy(Protocol):
    name: str

    def draw(self, scores: np.ndarray, k: int, rng: np.random.Generator) -> Slate: ...


def candidates(scores: np.ndarray, pool: int) -> np.ndarray:
    """item_idx of the `pool` best finite scores, best first (ties: lower index first)."""
    scores = np.asarray(scores, dtype=np.float64)
    finite = np.isfinite(scores)
    if pool < finite.sum():   # a partial sort: a request ranks a few of many thousand items
        s = np.where(finite, scores, -np.inf)
        kth = np.partition(s, len(s) - pool)[len(s) - pool]          # the pool-th best score
        above = np.flatnonzero(s > kth)
        chosen = np.concatenate([above, np.flatnonzero(s == kth)[: pool - len(above)]])
    else:
        chosen = np.flatnonzero(finite)
    return chosen[np.argsort(-scores[chosen], kind="stable")]


@dataclass(frozen=True)
class Greedy:
    name: str = GREEDY

    def draw(self, scores: np.ndarray, k: int, rng: np.random.Generator) -> Slate:
        top = candidates(scores, k)
        return Slate(top, np.ones(len(top)))


@dataclass(frozen=True)
class EpsilonGreedy:
    epsilon: float
    pool: int
    name: str = EPSILON_GREEDY

    def draw(self, scores: np.ndarray, k: int, rng: np.random.Generator) -> Slate:
        remaining = list(candidates(scores, self.pool))   # best first
        items, props = [], []
        while remaining and len(items) < k:
            explore = rng.random() < self.epsilon
            pick = int(rng.integers(len(remaining))) if explore else 0
            props.append((1 - self.epsilon) * (pick == 0) + self.epsilon / len(remaining))
            items.append(remaining.pop(pick))
        return Slate(np.array(items, dtype=np.int64), np.array(props))


@dataclass(frozen=True)
class Softmax:
    temperature: float
    pool: int
    name: str = SOFTMAX

    def draw(self, scores: np.ndarray, k: int, rng: np.random.Generator) -> Slate:
        pool = candidates(scores, self.pool)
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


def prob_highest(alpha: np.ndarray, beta: np.ndarray, grid: int) -> np.ndarray:
    """P(draw i is the highest) for independent Beta(alpha_i, beta_i) draws, by quadrature."""
    x = (np.arange(grid) + 0.5) / grid                      # midpoints of (0, 1)
    a, b = alpha[:, None], beta[:, None]
    pdf = np.exp((a - 1) * np.log(x) + (b - 1) * np.log1p(-x) - special.betaln(a, b))
    log_cdf = np.log(np.maximum(special.betainc(a, b, x), 1e-300))
    others = np.exp(log_cdf.sum(0, keepdims=True) - log_cdf)  # prod over j != i of F_j(x)
    p = (pdf * others).sum(1) / grid
    return p / p.sum()                                        # quadrature error spread evenly


@dataclass(frozen=True)
class Thompson:
    """Beta(prior_clicks + clicks, prior_misses + shows - clicks) per item; counts by item_idx."""

    clicks: np.ndarray
    shows: np.ndarray
    prior_clicks: float
    prior_misses: float
    pool: int
    grid: int = 1024
    name: str = THOMPSON
    _memo: dict = field(default_factory=dict, compare=False, repr=False)   # remaining pool -> P(highest)

    def draw(self, scores: np.ndarray, k: int, rng: np.random.Generator) -> Slate:
        pool = candidates(scores, self.pool)
        alpha = self.prior_clicks + self.clicks[pool]
        beta = self.prior_misses + self.shows[pool] - self.clicks[pool]
        items, props = [], []
        alive = np.ones(len(pool), dtype=bool)
        while alive.any() and len(items) < k:
            live = np.flatnonzero(alive)
            pick = live[int(np.argmax(rng.beta(alpha[live], beta[live])))]
            key = tuple(pool[live])   # the posteriors are fixed per instance: the items decide
            if key not in self._memo:
                if len(self._memo) >= MEMO_ENTRIES:
                    self._memo.clear()
                self._memo[key] = prob_highest(alpha[live], beta[live], self.grid)
            props.append(self._memo[key][np.flatnonzero(live == pick)[0]])
            items.append(pool[pick])
            alive[pick] = False
        return Slate(np.array(items, dtype=np.int64), np.array(props))
