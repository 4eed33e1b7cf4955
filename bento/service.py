"""The interest service the shop's front end calls: a thin BentoML layer over the one Recommender.

It loads, once, the production version of the registered recommender (else the latest, or
$INTEREST_MODEL_TAG) with the products added so far, and turns requests into its calls and its
answers into JSON. No ranking logic lives here: the scores are the evaluation's own.

    bentoml serve bento.service:InterestService        # or: make serve
"""
from __future__ import annotations

import os
from pathlib import Path

import bentoml
from pydantic import BaseModel, Field

PROJECT_DIR = Path(__file__).resolve().parents[1]
PARAMS_ENV, TAG_ENV = "INTEREST_PARAMS", "INTEREST_MODEL_TAG"
MAX_LIST = 1_000    # item ids a request may name (history or exclusions)
MAX_TEXT = 2_000    # characters of a text query
MAX_K = 1_000


class RecommendedItem(BaseModel):
    item: str
    title: str | None
    score: float
    position: int = Field(description="1 = first in the list")


class Recommendations(BaseModel):
    model_tag: str = Field(description="the registered version that answered")
    by: str = Field(description="what the list was made from: user, items, text or popular")
    items: list[RecommendedItem]


class ModelInfo(BaseModel):
    model_tag: str
    served: str
    dataset: str
    catalogue_items: int
    known_shoppers: int
    test_metrics: dict[str, float] = Field(description="the evaluation's figures of this recommender (test, unmasked)")


@bentoml.service(name="interest", traffic={"timeout": 30}, endpoints={"livez": "/livez", "readyz": "/readyz"})
class InterestService:
    def __init__(self) -> None:
        from components.core.config import load_params
        from components.core.log import configure_logging
        from components.serving.recommender import load_recommender

        configure_logging()
        self.params = load_params(os.environ.get(PARAMS_ENV) or PROJECT_DIR / "params.yaml")
        self.recommender = load_recommender(self.params, os.environ.get(TAG_ENV) or None)

    @bentoml.api
    def recommend(self, user: str | None = Field(None, max_length=200, description="a known shopper's id"),
                  items: list[str] | None = Field(None, max_length=MAX_LIST, description="recent item ids, oldest first"),
                  text: str | None = Field(None, max_length=MAX_TEXT, description="a statement of interests"),
                  k: int | None = Field(None, gt=0, le=MAX_K, description="list length (default serving.top_k)"),
                  exclude: list[str] | None = Field(None, max_length=MAX_LIST, description="item ids never to show"),
                  ) -> Recommendations:
        """Top-k products for one shopper, by shopper id, recent items, text, or nothing (popular)."""
        from components.core.errors import InterestError

        try:
            table = self.recommender.recommend(user=user, items=items or [], text=text, k=k, exclude=exclude or [])
        except InterestError as exc:
            raise bentoml.exceptions.InvalidArgument(str(exc)) from exc
        return Recommendations(
            model_tag=self.recommender.tag, by=str(table["by"].iloc[0]) if len(table) else "",
            items=[RecommendedItem(item=r.item, title=None if r.title != r.title else r.title,
                                   score=float(r.score), position=int(r.position))
                   for r in table.itertuples(index=False)])

    @bentoml.api
    def model_info(self) -> ModelInfo:
        """Which registered version answers, and the figures the evaluation measured for it."""
        manifest = self.recommender.bundle.manifest
        return ModelInfo(model_tag=self.recommender.tag, served=manifest["served"], dataset=manifest["dataset"],
                         catalogue_items=self.recommender.n_items, known_shoppers=self.recommender.n_shoppers,
                         test_metrics=self.recommender.figures)
