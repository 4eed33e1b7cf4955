"""Device choice in one place: CUDA when present, then Apple MPS, else CPU."""
from __future__ import annotations

import logging

import torch

from components.core.errors import ConfigError

log = logging.getLogger(__name__)


def select_device(preference: str = "auto") -> torch.device:
    """`auto` picks the fastest available device; an explicit name that is absent is an error."""
    if preference == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    device = torch.device(preference)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"device '{preference}' requested but CUDA is not available; use 'auto' or 'cpu'")
    return device
