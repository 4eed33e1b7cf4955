"""The interest service the shop's front end calls: a thin BentoML layer over the one Recommender.

It loads, once, the production version of the registered recommender (else the latest, or
$INTEREST_MODEL_TAG) with the products added so far, and turns requests into its calls and its
answers into JSON. No ranking logic lives here: the scores are the evaluation's own.

    bentoml serve bento.service:InterestService        # or: make serve
"""
from __future__ import annotations

import os
from contextlib import contextmanager
from http import HTTPStatus
from pathlib import Path
from typing import Iterator

import bentoml
import pandas as pd
from pydantic import BaseModel, Field

from components.core.errors import InterestError
from components.serving.auth import authorised, service_token

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
    propensity: float = Field(description="probability that the policy showed this item here, given the items before it")


class Recommendations(BaseModel):
    model_tag: str = Field(description="the registered version that answered")
    by: str = Field(description="what the list was made from: user, items, text, popular or similar to item")
    policy: str = Field(description="how the list was drawn from the scores")
    items: list[RecommendedItem]


class NewProduct(BaseModel):
    item: str = Field(min_length=1, max_length=200)
    title: str | None = Field(None, max_length=MAX_TEXT)
    brand: str | None = Field(None, max_length=MAX_TEXT)
    categories: str | None = Field(None, max_length=MAX_TEXT)
    description: str | None = Field(None, max_length=MAX_TEXT)


class AddedProducts(BaseModel):
    model_tag: str
    added: int
    added_in_all: int = Field(description="products added since training, kept across restarts")


class ModelInfo(BaseModel):
    model_tag: str
    served: str
    dataset: str
    catalogue_items: int
    known_shoppers: int
    test_metrics: dict[str, float] = Field(description="the evaluation's figures of this recommender (test, unmasked)")


@contextmanager
def _as_bad_request() -> Iterator[None]:
    """The Recommender's errors (unknown ids, shoppers, bad combinations) are the client's: 400."""
    try:
        yield
    except InterestError as exc:
        raise bentoml.exceptions.InvalidArgument(str(exc)) from exc


def _answer(tag: str, table: pd.DataFrame) -> Recommendations:
    return Recommendations(
        model_tag=tag, by=str(table["by"].iloc[0]) if len(table) else "",
        policy=str(table["policy"].iloc[0]) if len(table) else "",
        items=[RecommendedItem(item=r.item, title=None if pd.isna(r.title) else str(r.title),
                               score=float(r.score), position=int(r.position), propensity=float(r.propensity))
               for r in table.itertuples(index=False)])


@bentoml.service(name="interest", traffic={"timeout": 30}, endpoints={"livez": "/livez", "readyz": "/readyz"})
class InterestService:
    def __init__(self) -> None:
        from components.core.config import load_params
        from components.core.log import configure_logging
        from components.serving.recommender import load_recommender

        configure_logging()
        self.params = load_params(os.environ.get(PARAMS_ENV) or PROJECT_DIR / "params.yaml")
        self.recommender = load_recommender(self.params, os.environ.get(TAG_ENV) or None)
        self.token = service_token(self.params.path(self.params.serving.token_file))

    @bentoml.api
    def recommend(self, user: str | None = Field(None, max_length=200, description="a known shopper's id"),
                  items: list[str] | None = Field(None, max_length=MAX_LIST, description="recent item ids, oldest first"),
                  text: str | None = Field(None, max_length=MAX_TEXT, description="a statement of interests"),
                  k: int | None = Field(None, gt=0, le=MAX_K, description="list length (default serving.top_k)"),
                  exclude: list[str] | None = Field(None, max_length=MAX_LIST, description="item ids never to show"),
                  policy: str | None = Field(None, max_length=40, description=(
                      "greedy, epsilon_greedy or softmax (default serving.policy)")),
                  ) -> Recommendations:
        """k products for one shopper, by shopper id, recent items, text, or nothing (popular)."""
        with _as_bad_request():
            return _answer(self.recommender.tag, self.recommender.recommend(
                user=user, items=items or [], text=text, k=k, exclude=exclude or [], policy=policy))

    @bentoml.api
    def similar_items(self, item: str = Field(max_length=200, description="a catalogue or added item id"),
                      k: int | None = Field(None, gt=0, le=MAX_K, description="list length (default serving.top_k)"),
                      exclude: list[str] | None = Field(None, max_length=MAX_LIST, description="item ids never to show"),
                      ) -> Recommendations:
        """The items the model represents closest to `item` (products added since training too)."""
        with _as_bad_request():
            return _answer(self.recommender.tag, self.recommender.similar_items(item, k, exclude or []))

    @bentoml.api
    def add_items(self, ctx: bentoml.Context,
                  products: list[NewProduct] = Field(min_length=1, max_length=MAX_LIST)) -> AddedProducts:
        """New products, recommendable at once through their text (no retraining). Needs the
        service token: `Authorization: Bearer <token>`."""
        from components.serving.added_items import new_items_table
        from components.serving.recommender import add_and_keep

        self._authorise(ctx)
        with _as_bad_request():
            new = new_items_table(pd.DataFrame([p.model_dump() for p in products]), "add_items")
            added = add_and_keep(self.params, self.recommender, new)
        return AddedProducts(model_tag=self.recommender.tag, added=added["added"], added_in_all=added["added_in_all"])

    def _authorise(self, ctx: bentoml.Context) -> None:
        if not authorised(ctx.request.headers.get("authorization"), self.token):
            raise bentoml.exceptions.BentoMLException("this call changes the service: send the service token as "
                                                      "`Authorization: Bearer <token>`", error_code=HTTPStatus.UNAUTHORIZED)

    @bentoml.api
    def model_info(self) -> ModelInfo:
        """Which registered version answers, and the figures the evaluation measured for it."""
        manifest = self.recommender.bundle.manifest
        return ModelInfo(model_tag=self.recommender.tag, served=manifest["served"], dataset=manifest["dataset"],
                         catalogue_items=self.recommender.n_items, known_shoppers=self.recommender.n_shoppers,
                         test_metrics=self.recommender.figures)
