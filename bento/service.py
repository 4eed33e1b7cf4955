"""The interest service the shop's front end calls: a thin BentoML layer over
components.serving.app.ServingApp, which does the work (arms, hot swap, feedback store).

It serves the production version of the registered recommender (else the latest, or
$INTEREST_MODEL_TAG), with the products added so far. Request and answer types are pydantic, so
they are checked on arrival and documented in the OpenAPI page at /docs.

    bentoml serve bento.service:InterestService        # or: make serve
"""
from __future__ import annotations

import os
from contextlib import contextmanager
from http import HTTPStatus
from pathlib import Path
from typing import Iterator, Literal

import bentoml
import pandas as pd
import torch
from pydantic import BaseModel, Field
from threadpoolctl import threadpool_limits

from components.core.config.loader import load_params
from components.core.config.schema import PolicyName
from components.core.errors import InterestError
from components.feedback.events import EVENT_KINDS
from components.serving.auth import authorised, service_token
from components.serving.request_guard import RequestGuard

PROJECT_DIR = Path(__file__).resolve().parents[1]
PARAMS = load_params(os.environ.get("INTEREST_PARAMS") or PROJECT_DIR / "params.yaml")
LIMITS = PARAMS.serving
ID = Field(min_length=1, max_length=200)


class RecommendedItem(BaseModel):
    item: str
    title: str | None
    score: float
    position: int = Field(description="1 = first in the list")
    propensity: float = Field(description="probability that the policy showed this item here, given the items before it")
    reason: str | None = Field(None, description="why it is shown, when the request asked (explain): the history item it "
                                                 "is most like, the query words its title shares, or popularity")


class Recommendations(BaseModel):
    request_id: str = Field(description="name it in feedback events about this list")
    model_tag: str = Field(description="the registered version that answered")
    arm: str = Field(description="the A/B arm of this shopper (serving.arms)")
    by: str = Field(description="what the list was made from: user, items, text, popular or similar to item")
    policy: str = Field(description="how the list was drawn from the scores")
    from_session: bool = Field(description="the session's earlier list, repeated (serving.session_ttl_seconds)")
    items: list[RecommendedItem]


class NewProduct(BaseModel):
    item: str = ID
    title: str | None = Field(None, max_length=LIMITS.max_text)
    brand: str | None = Field(None, max_length=LIMITS.max_text)
    categories: str | None = Field(None, max_length=LIMITS.max_text)
    description: str | None = Field(None, max_length=LIMITS.max_text)


class AddedProducts(BaseModel):
    model_tag: str
    added: int
    added_in_all: int = Field(description="products added since training, kept across restarts")


class FeedbackEvent(BaseModel):
    event_id: str = Field(min_length=1, max_length=200, description="the client's id: resending an event stores it once")
    kind: Literal[EVENT_KINDS]  # type: ignore[valid-type]
    user: str = Field(min_length=1, max_length=200, description="the shop's shopper id (pseudonymised on arrival)")
    item: str = ID
    request_id: str | None = Field(None, max_length=200, description="the recommend answer this event reacts to")
    at: float | None = Field(None, allow_inf_nan=False, description="when it happened, unix seconds")
    rating: float | None = Field(None, allow_inf_nan=False)
    text: str | None = Field(None, max_length=LIMITS.max_text, description="review text")


class FeedbackStored(BaseModel):
    stored: int = Field(description="events committed now")
    duplicates: int = Field(description="events already stored (same event_id): not stored again")


class Erasure(BaseModel):
    shopper: str = Field(description="the shopper's pseudonym (the raw id is not kept)")
    at: str = Field(description="when the erasure was registered (UTC)")
    removed: dict = Field(description="rows deleted from the feedback store: events, slates")


class Arm(BaseModel):
    name: str
    share: float
    model_tag: str
    policy: str


class ModelInfo(BaseModel):
    model_tag: str
    served: str
    dataset: str
    catalogue_items: int
    known_shoppers: int
    test_metrics: dict[str, float] = Field(description="the evaluation's figures of this recommender (test, unmasked)")
    arms: list[Arm]
    feedback_events: int


@contextmanager
def _as_bad_request() -> Iterator[None]:
    """The app's errors (unknown ids, shoppers, bad combinations) are the client's: 400."""
    try:
        yield
    except InterestError as exc:
        raise bentoml.exceptions.InvalidArgument(str(exc)) from exc


@bentoml.service(name="interest", traffic={"timeout": 30}, threads=LIMITS.threads, logging={"access": {"enabled": LIMITS.access_log}},
                 metrics={"enabled": LIMITS.prometheus_metrics, "namespace": "bentoml_service"},
                 endpoints={"livez": "/livez", "readyz": "/readyz"})
class InterestService:
    def __init__(self) -> None:
        from components.core.log import configure_logging
        from components.serving.app import TAG_ENV, ServingApp
        from components.serving.client_errors import log_client_errors_in_one_line

        configure_logging()
        log_client_errors_in_one_line()
        threadpool_limits(LIMITS.blas_threads, user_api="blas")   # requests run in parallel threads already
        torch.set_num_threads(LIMITS.blas_threads)   # and so do workers: OpenMP threads spinning beside them starve the rest
        self.app = ServingApp(PARAMS, os.environ.get(TAG_ENV) or None)
        self.token = service_token(PARAMS.path(PARAMS.serving.token_file))

    @bentoml.on_shutdown
    def close(self) -> None:
        self.app.close()

    @bentoml.api
    def recommend(self, user: str | None = Field(None, min_length=1, max_length=200, description="the shop's shopper id"),
                  items: list[str] | None = Field(None, max_length=LIMITS.max_list, description="recent item ids, oldest first"),
                  text: str | None = Field(None, max_length=LIMITS.max_text, description="a statement of interests"),
                  k: int | None = Field(None, ge=1, le=LIMITS.max_k, description="list length (default serving.top_k)"),
                  exclude: list[str] | None = Field(None, max_length=LIMITS.max_list, description="item ids never to show"),
                  policy: PolicyName | None = Field(
                      None, description="how to draw the list (default: the arm's, else serving.policy)"),
                  session_id: str | None = Field(None, min_length=1, max_length=200, description=(
                      "the same session gets the same list for serving.session_ttl_seconds, unless it sent feedback")),
                  hide_history: bool = Field(True, description="never show items of the history (off: the evaluation's protocol)"),
                  explain: bool = Field(False, description="give each item a short reason a shop can show"),
                  ) -> Recommendations:
        """k products for one shopper, by shopper id, recent items, text, or nothing (popular)."""
        with _as_bad_request():
            return Recommendations(**self.app.recommend(
                user=user, items=items or [], text=text, k=k, exclude=exclude or [], policy=policy,
                session_id=session_id, hide_history=hide_history, explain=explain))

    @bentoml.api
    def similar_items(self, item: str = Field(min_length=1, max_length=200, description="a catalogue or added item id"),
                      k: int | None = Field(None, ge=1, le=LIMITS.max_k, description="list length (default serving.top_k)"),
                      exclude: list[str] | None = Field(None, max_length=LIMITS.max_list, description="item ids never to show"),
                      ) -> Recommendations:
        """The items the model represents closest to `item` (products added since training too)."""
        with _as_bad_request():
            return Recommendations(**self.app.similar_items(item, k, exclude or []))

    @bentoml.api
    def feedback(self, ctx: bentoml.Context,
                 events: list[FeedbackEvent] = Field(min_length=1, max_length=LIMITS.max_list)) -> FeedbackStored:
        """What shoppers did: impressions, clicks, add_to_cart, purchases, ratings, reviews. Stored
        (all or none) before the answer; resending an event_id stores nothing twice. Needs the
        service token: `Authorization: Bearer <token>`."""
        from components.serving.app import FeedbackInput

        self._authorise(ctx)
        with _as_bad_request():
            return FeedbackStored(**self.app.feedback([FeedbackInput(**e.model_dump()) for e in events]))

    @bentoml.api
    def add_items(self, ctx: bentoml.Context,
                  products: list[NewProduct] = Field(min_length=1, max_length=LIMITS.max_list)) -> AddedProducts:
        """New products, recommendable at once through their text (no retraining). Needs the
        service token: `Authorization: Bearer <token>`."""
        self._authorise(ctx)
        with _as_bad_request():
            return AddedProducts(**self.app.add_items(pd.DataFrame([p.model_dump() for p in products])))

    @bentoml.api
    def forget_user(self, ctx: bentoml.Context, user: str = Field(min_length=1, max_length=LIMITS.max_text)) -> Erasure:
        """The right to erasure: the shopper's events and served slates leave the feedback store,
        the erasure is registered so the next data version leaves them out, and they are served as
        an anonymous shopper from now on. Needs the service token: `Authorization: Bearer <token>`."""
        self._authorise(ctx)
        return Erasure(**self.app.forget_user(user))

    def _authorise(self, ctx: bentoml.Context) -> None:
        if not authorised(ctx.request.headers.get("authorization"), self.token):
            raise bentoml.exceptions.BentoMLException("this call changes the service: send the service token as "
                                                      "`Authorization: Bearer <token>`", error_code=HTTPStatus.UNAUTHORIZED)

    @bentoml.api
    def model_info(self) -> ModelInfo:
        """Which registered version answers (per A/B arm), and the figures the evaluation measured for it."""
        return ModelInfo(**self.app.info())


InterestService.add_asgi_middleware(RequestGuard, max_body_bytes=LIMITS.max_body_bytes)
