"""Seeded, deterministic fitting that leaves the process as it found it: torch's global RNG and
its deterministic-algorithms switch are restored when the block ends, so a DAG task, a test or
the service that fits something does not change how the rest of the process runs."""
from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator

import torch


@contextmanager
def seeded(seed: int, deterministic: bool | None, device: torch.device | None = None) -> Iterator[None]:
    """Same seed, same weights: on CPU the deterministic kernels are what makes that hold
    (the default embedding-gradient accumulation is order-dependent across threads).
    deterministic None leaves the switch as the caller has it."""
    devices = [device] if device is not None and device.type == "cuda" else []
    was_deterministic = torch.are_deterministic_algorithms_enabled()
    was_warn_only = torch.is_deterministic_algorithms_warn_only_enabled()
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        if deterministic is not None:
            torch.use_deterministic_algorithms(deterministic, warn_only=True)
        try:
            yield
        finally:
            torch.use_deterministic_algorithms(was_deterministic, warn_only=was_warn_only)
