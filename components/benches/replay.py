"""Offline = online: evaluation cases replayed through the running service over HTTP.

Each case's history goes to `recommend` as it went to the evaluation's scorer (its items, history
not hidden: the evaluation's headline protocol), and the answer's list is scored like the
evaluation's ranking. If the service scored differently from what was evaluated, the figures differ.
"""
from __future__ import annotations

import logging
import math
from concurrent.futures import ThreadPoolExecutor
from typing import Sequence

import httpx
import numpy as np
from tqdm import tqdm

from components.core.errors import InterestError

log = logging.getLogger(__name__)
REPLAY_CLIENTS = 4   # concurrent requests: enough to keep a 2-core server busy, not to overload it


def case_ndcg(answer: Sequence[str], target: str, k: int) -> float:
    """NDCG@k of one case with one target: 1 / log2(rank + 2) if it is in the top k."""
    return next((1.0 / math.log2(rank + 2) for rank, item in enumerate(answer[:k]) if item == target), 0.0)


def replay(url: str, histories: Sequence[Sequence[str]], targets: Sequence[str], k: int,
           timeout: float = 60.0) -> np.ndarray:
    """Per-case NDCG@k of the service's answers (histories and targets in item ids)."""
    def ask(case: int) -> float:
        response = client.post(f"{url}/recommend", json={"items": list(histories[case]), "k": k, "hide_history": False})
        if response.status_code != 200:
            raise InterestError(f"replay: the service answered {response.status_code} for case {case}: "
                                f"{response.text[:300]}")
        return case_ndcg([i["item"] for i in response.json()["items"]], targets[case], k)

    with httpx.Client(timeout=timeout) as client, ThreadPoolExecutor(REPLAY_CLIENTS) as pool:
        values = list(tqdm(pool.map(ask, range(len(histories))), total=len(histories), desc="replay", unit="case"))
    return np.asarray(values)
