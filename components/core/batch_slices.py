"""The one loop over a long list in fixed-size chunks (scoring, ranking, encoding)."""
from __future__ import annotations

from typing import Iterator


def batch_slices(n: int, size: int) -> Iterator[slice]:
    """slice(start, start + size) over range(n): the last one may be shorter; none when n == 0."""
    if size <= 0:
        raise ValueError(f"batch size must be positive, got {size}")
    for start in range(0, n, size):
        yield slice(start, min(start + size, n))
