"""What the interest service does, without HTTP: bento/service.py maps requests onto these calls.

Shop ids are pseudonymised (the ingest HMAC) on arrival, so neither the store nor the logs ever
hold a raw one. Each request gets an id, an A/B arm (by hash of the pseudonym) and the answer of
that arm's recommender; the served slate is logged with its propensities, so feedback events
that name the request are stored with the position and propensity their item was shown with.
"""
from __future__ import annotations

import logging
import threading
import uuid
from dataclasses import dataclass
from typing import Sequence

import pandas as pd

from components.core.config.schema import ArmParams, Params
from components.data.erasure import ErasedShoppers, record_erasure
from components.data.ingest import pseudonym, pseudonym_key
from components.feedback.events import Event
from components.feedback.store import FeedbackStore, open_store
from components.serving.added_items import new_items_table
from components.serving.arms import assign_arm
from components.serving.hot_swap import LiveRecommender
from components.serving.engaged_items import EngagedItems
from components.serving.item_feedback import ItemFeedbackCounts
from components.serving.policies import THOMPSON
from components.serving.recommender import Ranked, Recommender, UnknownItems, add_and_keep, catch_up_added
from components.serving.sessions import SessionSlates

log = logging.getLogger(__name__)
TAG_ENV = "INTEREST_MODEL_TAG"   # pins the version every untagged arm answers with (default: production)


@dataclass(frozen=True)
class FeedbackInput:
    """One event as the shop sends it: `user` is the shop's own id (pseudonymised on arrival)."""
    event_id: str
    kind: str
    user: str
    item: str
    request_id: str | None = None
    at: float | None = None
    rating: float | None = None
    text: str | None = None


def served_tags(params: Params, tag: str | None = None) -> set[str | None]:
    """The versions a worker answers with: each arm's pinned tag, and production (None) for the
    arms that pin none, unless `tag` ($INTEREST_MODEL_TAG) pins those too."""
    arms = params.serving.arms
    pinned = {arm.tag for arm in arms if arm.tag} | ({tag} if tag else set())
    return pinned | ({None} if tag is None and any(arm.tag is None for arm in arms) else set())


class ServingApp:
    def __init__(self, params: Params, tag: str | None = None):
        self.params = params
        cfg = params.serving
        self._key, self._key_length = pseudonym_key(params), params.ingest.pseudonym_length
        self.store: FeedbackStore = open_store(params)
        self.item_feedback = ItemFeedbackCounts(self.store, cfg.feedback_counts_seconds)
        self.engaged = EngagedItems(self.store, cfg.engaged_poll_seconds)
        self._live = {t: LiveRecommender(params, t).start() for t in served_tags(params, tag)}
        self._default_tag = tag   # $INTEREST_MODEL_TAG pins every untagged arm
        self.sessions = SessionSlates(cfg.session_ttl_seconds)
        self.erased = ErasedShoppers(params.path(params.privacy.erasure_dir))   # served as anonymous, every worker

    def close(self) -> None:
        for live in self._live.values():
            live.stop()
        self.store.close()

    def pseudonym(self, raw_user: str) -> str:
        return pseudonym(raw_user, self._key, self._key_length)

    def _arm(self, key: str) -> ArmParams:
        return assign_arm(key, self.params.serving.arms)

    def _live_of(self, arm: ArmParams) -> LiveRecommender:
        return self._live[arm.tag or self._default_tag]

    @property
    def recommender(self) -> Recommender:
        """The recommender of the first arm (model_info, similar items, validation of ids)."""
        return self._live_of(self.params.serving.arms[0]).current

    # ------------------------------------------------------------------ answers
    def recommend(self, *, user: str | None = None, items: Sequence[str] = (), text: str | None = None,
                  k: int | None = None, exclude: Sequence[str] = (), policy: str | None = None,
                  session_id: str | None = None, hide_history: bool = True, explain: bool = False) -> dict:
        request_id = uuid.uuid4().hex
        who = self.pseudonym(user) if user else None
        who = None if who in self.erased else who   # a forgotten shopper's history is not used nor logged
        arm = self._arm(who or session_id or request_id)
        session_key = (session_id, who, tuple(items), text, k, tuple(exclude), policy, hide_history, explain)
        if session_id and (cached := self.sessions.get(session_key)) is not None:
            answer = {**cached, "request_id": request_id, "from_session": True}
            self._log(answer, who, session_id)   # shown again: its feedback finds this request
            return answer
        recommender = self._live_of(arm).current   # held for the whole request: a swap can't split it
        since = self._engaged_since_training(recommender, who) if who else ()
        policy = policy or arm.policy or self.params.serving.policy
        feedback = self.item_feedback.current() if policy == THOMPSON else None
        ranked = recommender.rank(user=who, items=items, text=text, k=k, exclude=exclude, policy=policy,
                                  since_training=since, hide_history=hide_history, feedback=feedback, explain=explain)
        answer = self._answer(request_id, recommender.tag, arm.name, ranked)
        self._log(answer, who, session_id)
        if session_id:
            self.sessions.put(session_key, who, answer)
        return answer

    def similar_items(self, item: str, k: int | None = None, exclude: Sequence[str] = ()) -> dict:
        request_id = uuid.uuid4().hex
        arm = self.params.serving.arms[0]
        recommender = self._live_of(arm).current
        answer = self._answer(request_id, recommender.tag, arm.name, recommender.similar_items(item, k, exclude))
        self._log(answer, None, None)
        return answer

    def _engaged_since_training(self, recommender: Recommender, who: str) -> list[str]:
        """Items the shopper engaged with through served feedback, that this version knows."""
        return [i for i in self.engaged.of(who) if recommender.knows(i)]

    @staticmethod
    def _answer(request_id: str, tag: str, arm: str, ranked: Ranked) -> dict:
        return {"request_id": request_id, "model_tag": tag, "arm": arm, "by": ranked.by, "policy": ranked.policy,
                "from_session": False, "items": ranked.rows()}

    def _log(self, answer: dict, who: str | None, session_id: str | None) -> None:
        self.store.log_slate(answer["request_id"], user=who, session_id=session_id, arm=answer["arm"],
                             model_tag=answer["model_tag"], policy=answer["policy"], by=answer["by"],
                             items=[(i["item"], i["score"], i["propensity"]) for i in answer["items"]])

    # ------------------------------------------------------------------ changes
    def feedback(self, batch: Sequence[FeedbackInput]) -> dict:
        """Store the events (all or none); answered only after they are committed."""
        recommender = self.recommender
        unknown = [e.item for e in batch if not recommender.knows(e.item)]
        if unknown:
            raise UnknownItems(f"events name {len(unknown)} unknown item ids (e.g. {unknown[:5]}): "
                               "use catalogue ids, or add the products first (add_items)")
        events = []
        for e in batch:
            who = self.pseudonym(e.user)
            events.append(Event(event_id=e.event_id, kind=e.kind, user=who, item=e.item, request_id=e.request_id,
                                at=e.at, rating=e.rating, text=e.text, arm=self._arm(who).name))
        recorded = self.store.record(events)
        self.engaged.add(recorded.engagements)   # this worker's next answer for these shoppers knows them
        for who in {e.user for e in events}:
            self.sessions.forget_user(who)
        return {"stored": recorded.new, "duplicates": recorded.duplicates}

    def forget_user(self, user: str) -> dict:
        """The right to erasure at the service: the shopper's events and slates leave the feedback
        store, the erasure is registered (the next data version leaves them out), and from now on
        they are served as an anonymous shopper. Pipeline files: `interest forget-user`."""
        who = self.pseudonym(user)
        removed = self.store.forget(who)
        self.engaged.forget(who)
        self.sessions.forget_user(who)
        return record_erasure(self.params.path(self.params.privacy.erasure_dir), who, {"feedback_store": removed})

    def add_items(self, products: pd.DataFrame) -> dict:
        """New products join every served version at once (and every later load)."""
        new = new_items_table(products, "add_items")
        first, *others = self._live.values()
        with first.lock:
            added = add_and_keep(self.params, first.current, new)
        for live in others:
            with live.lock:
                catch_up_added(self.params, live.current)
        for live in self._live.values():   # the shoppers' kept scores, over the new catalogue, in the background
            threading.Thread(target=live.current.keep_shopper_tops, args=(self.params.serving.shopper_tops,),
                             name="shopper-tops", daemon=True).start()
        return {"added": added["added"], "added_in_all": added["added_in_all"], "model_tag": first.current.tag}

    def info(self) -> dict:
        recommender = self.recommender
        manifest = recommender.bundle.manifest
        return {"model_tag": recommender.tag, "served": manifest["served"], "dataset": manifest["dataset"],
                "catalogue_items": recommender.n_items, "known_shoppers": recommender.n_shoppers,
                "test_metrics": recommender.figures,
                "arms": [{"name": a.name, "share": a.share, "model_tag": self._live_of(a).current.tag,
                          "policy": a.policy or self.params.serving.policy} for a in self.params.serving.arms],
                "feedback_events": self.store.count()}
