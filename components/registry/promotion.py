"""Which stored version is in production: one at a time, every promotion recorded, and the
previous one restored by a rollback.

The production version carries the label `stage=production` in the model store (so `bentoml
models list` shows it); the one it replaced goes back to `stage=candidate`. The history lives
beside the store (`<store>/promotions/<model name>.json`), newest last, so a rollback knows what
was in production before.
"""
from __future__ import annotations

import logging
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from components.core.config.schema import Params
from components.core.errors import InterestError
from components.core.io import read_json, write_json
from components.registry.store import model_store, store_home

log = logging.getLogger(__name__)

PRODUCTION, CANDIDATE = "production", "candidate"


def history_file(params: Params) -> Path:
    return store_home(params) / "promotions" / f"{params.registry.model_name}.json"


def promotion_history(params: Params) -> list[dict[str, Any]]:
    """Every promotion, oldest first: {"tag", "previous", "at", "reason"}."""
    path = history_file(params)
    return read_json(path) if path.is_file() else []


def production_tag(params: Params) -> str | None:
    history = promotion_history(params)
    return history[-1]["tag"] if history else None


def _set_stage(params: Params, tag: str, stage: str) -> str:
    """Label a stored version; returns its full tag (name:version)."""
    from bentoml.exceptions import NotFound

    try:
        stored = model_store(params).get(tag)
    except NotFound as exc:
        raise InterestError(f"model {tag} is not in the model store at {store_home(params)}: "
                            "`bentoml models list` shows what is there") from exc
    stored.info.labels["stage"] = stage
    stored.flush()   # rewrites the version's model.yaml with the new label
    return str(stored.tag)


def promote(params: Params, tag: str, reason: str = "promoted") -> dict[str, Any]:
    """Make `tag` the production version; the current one, if any, becomes a candidate again."""
    if ":" not in tag:
        tag = f"{params.registry.model_name}:{tag}"
    previous = production_tag(params)
    full = _set_stage(params, tag, PRODUCTION)
    if previous == full:
        return {"production": full, "previous": previous, "changed": False}
    if previous is not None:
        _set_stage(params, previous, CANDIDATE)
    entry = {"tag": full, "previous": previous, "at": datetime.now(timezone.utc).isoformat(), "reason": reason}
    write_json([*promotion_history(params), entry], history_file(params))
    log.info("%s is in production (was %s)", full, previous)
    return {"production": full, "previous": previous, "changed": True}


def rollback(params: Params) -> dict[str, Any]:
    """Put back the version the last promotion replaced."""
    history = promotion_history(params)
    if not history or history[-1]["previous"] is None:
        raise InterestError("nothing to roll back to: no earlier production version is recorded")
    return promote(params, history[-1]["previous"], reason=f"rollback of {history[-1]['tag']}")
