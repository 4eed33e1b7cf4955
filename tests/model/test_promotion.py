"""Promotion in a real BentoML model store: one production version at a time, each promotion
recorded, a rollback restores the version it replaced, and the Recommender serves production."""
from __future__ import annotations

import pytest

from components.core.config.loader import load_params
from components.core.errors import InterestError
from components.registry.promotion import production_tag, promote, promotion_history, rollback
from components.registry.store import model_store, register
from components.serving.recommender import load_recommender
from tests.registry_copies import store_copy

pytestmark = pytest.mark.model


def stages(params) -> dict[str, str]:
    return {str(m.tag): m.info.labels["stage"] for m in model_store(params).list(params.registry.model_name)}


def test_promote_and_roll_back(served_sample, tmp_path):
    params = load_params(served_sample.root / "params.yaml", environ={
        "INTEREST__REGISTRY__HOME": str(tmp_path), "INTEREST__REGISTRY__RECORD_FILE": str(tmp_path / "registered.json")})
    first = register(params)["tag"]
    assert register(params)["tag"] == first                  # the same bundle is stored once
    second = store_copy(params, first)
    assert stages(params) == {first: "candidate", second: "candidate"} and production_tag(params) is None
    with pytest.raises(InterestError, match="nothing to roll back"):
        rollback(params)

    assert promote(params, first)["changed"]
    assert promote(params, second.split(":")[1]) == {"production": second, "previous": first, "changed": True}
    assert stages(params) == {first: "candidate", second: "production"}
    assert load_recommender(params).tag == second          # production is what is served
    assert not promote(params, second)["changed"]          # promoting it again changes nothing

    assert rollback(params)["production"] == first
    assert stages(params) == {first: "production", second: "candidate"}
    assert [h["tag"] for h in promotion_history(params)] == [first, second, first]
    assert promotion_history(params)[-1]["reason"] == f"rollback of {second}"
    with pytest.raises(InterestError, match="not in the model store"):
        promote(params, "interest_model:nosuchversion")
