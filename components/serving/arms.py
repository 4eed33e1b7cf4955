"""A/B arms: which registered version and which policy answer a shopper.

A shopper's arm is a deterministic hash of the pseudonymised id (or of the session, for anonymous
requests), so the same shopper always sees the same arm and shares hold over many shoppers.
"""
from __future__ import annotations

import hashlib
from typing import Sequence

from components.core.config.schema import ArmParams

HASH_SPACE = 2 ** 64


def bucket(key: str) -> float:
    """A uniform number in [0, 1) fixed by the key."""
    return int.from_bytes(hashlib.sha256(key.encode("utf-8")).digest()[:8], "big") / HASH_SPACE


def assign_arm(key: str, arms: Sequence[ArmParams]) -> ArmParams:
    u, edge = bucket(key), 0.0
    for arm in arms:
        edge += arm.share
        if u < edge:
            return arm
    return arms[-1]   # shares sum to 1 up to rounding
