"""The one served recommender: loaded once from a bundle, it answers for a known shopper, for a
list of recent items, for a free text, or for nothing at all, in item ids.

It scores with exactly the scorers the evaluation measured (the fusion of the cold-start model,
popularity, item-kNN and text similarity, with the weights tuned on valid), rebuilt from the
bundle, so what is evaluated is what is served. Products added after training join its catalogue
at once through the model's text path.
"""
from __future__ import annotations

import logging
import re
import threading
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd
import scipy.sparse as sp
import torch
from torch.nn import functional as F

from components.core.batch_slices import batch_slices
from components.core.config.schema import Params, ServingParams
from components.core.device import select_device
from components.core.errors import InterestError
from components.features.embeddings import TextEncoderSettings, item_texts
from components.features.text_encoder import TextEncoder, load_text_encoder
from components.models.baselines import BaselineFit
from components.models.checkpoint import load_checkpoint
from components.models.fusion import FusionScorer, fused_scorers
from components.models.interest_model import InterestModel, extend_catalogue
from components.models.interest_scorer import COLD_MODEL_SCORER_NAME, ModelScorer
from components.registry.bundle import NO_SEGMENT, SERVED, Bundle, headline
from components.registry.promotion import production_tag
from components.registry.store import registered
from components.serving.added_items import AddedItems, append_added, load_added, read_new_items
from components.serving.micro_batcher import MicroBatcher
from components.serving.item_feedback import ItemFeedback
from components.serving.policies import (EPSILON_GREEDY, GREEDY, SOFTMAX, THOMPSON, EpsilonGreedy, Greedy, Policy,
                                         Softmax, Thompson)
from components.serving.consistency import blend_with_popularity, personal_weight, segment_log_popularity
from components.serving.popular_default import popular_diverse_default
from components.serving.shopper_tops import ShopperTops, shopper_tops

log = logging.getLogger(__name__)

# how a list was made, by what the request gave
BY_USER, BY_ITEMS, BY_TEXT, BY_NOTHING, BY_ITEM = "user", "items", "text", "popular", "similar to item"
WORD = re.compile(r"[a-z0-9]{3,}")


def words(text: str) -> list[str]:
    """Lowercase words of three or more letters or digits: what a title and a query can share."""
    return WORD.findall(text.lower())


@dataclass(frozen=True)
class Ranked:
    """A served list, best first: plain arrays, since a table per request costs more than the scoring."""
    items: np.ndarray
    titles: np.ndarray
    scores: np.ndarray
    propensities: np.ndarray   # the probability that the policy showed each item at its position
    by: str
    policy: str
    reasons: tuple[str, ...] | None = None   # why each item is there, when the request asked (explain)

    def rows(self) -> list[dict]:
        reasons = self.reasons or (None,) * len(self.items)
        return [{"item": str(item), "title": None if pd.isna(title) else str(title), "score": float(score),
                 "position": position, "propensity": float(propensity), "reason": reason}
                for position, (item, title, score, propensity, reason)
                in enumerate(zip(self.items, self.titles, self.scores, self.propensities, reasons), 1)]

    def table(self) -> pd.DataFrame:
        return pd.DataFrame(self.rows()).reindex(columns=["item", "title", "score", "position", "propensity"]) \
            .assign(by=self.by, policy=self.policy)


class UnknownItems(InterestError):
    """Item ids that are neither in the catalogue nor added; the message lists some of them."""


class Recommender:
    """Scorer (name "fusion") over item_idx histories, and `recommend` over item ids."""

    name = SERVED

    def __init__(self, bundle: Bundle, tag: str, serving: ServingParams, device: torch.device, batch_size: int):
        self.bundle = bundle
        self.tag = tag   # the registered version (name:version), or the bundle folder
        self.serving = serving
        self.batch_size = batch_size
        self.model: InterestModel = load_checkpoint(bundle.checkpoint, device)[0]
        self.catalogue = bundle.catalogue()
        self._fit = bundle.baselines()
        self._baselines_cfg = bundle.baselines_params
        self.text_settings: TextEncoderSettings = bundle.text_encoder
        histories = bundle.histories()
        self._histories = dict(zip(histories["user"], histories["history"]))
        self._segments = dict(zip(histories["user"], histories["segment"]))
        self._segment_popularity = bundle.segment_popularity()
        self._encoder: TextEncoder | None = None
        self._encoder_loading = threading.Lock()   # concurrent first text requests load it once
        self._batcher: MicroBatcher | None = None
        self._feedback_cache: tuple | None = None
        self._tops: ShopperTops | None = None
        self._rebuild()

    def start_batching(self, max_batch: int, max_wait_ms: float) -> None:
        """Score concurrent requests together (the service; see serving.micro_batcher)."""
        if max_batch > 1:
            self._batcher = MicroBatcher(self.score, max_batch, max_wait_ms)

    def keep_shopper_tops(self, depth: int) -> None:
        """Keep every known shopper's `depth` best served scores (see serving.shopper_tops): their
        requests then draw from those instead of scoring the catalogue. Over the catalogue as it
        is now: once products are added, kept rows are not used until this runs again."""
        if depth <= 0:
            return
        histories = {user: self.item_indices(list(items)) for user, items in self._histories.items()}

        def served(users: Sequence[str], batch: Sequence[Sequence[int]]) -> list[np.ndarray]:
            return [self.personalised(row, len(h), self.segment_of(u)) for u, h, row in zip(users, batch, self.score(batch))]
        tops = shopper_tops(histories, served, depth, self.batch_size, self.n_items + 1)
        if tops.n_scored == self.n_items + 1:   # no product was added meanwhile
            self._tops = tops

    def retire(self) -> None:
        """Swapped out: requests still holding it are answered, its batcher then stops."""
        if self._batcher is not None:
            self._batcher.retire()

    def _score_one(self, history: Sequence[int]) -> np.ndarray:
        return self._batcher.score(history) if self._batcher is not None else self.score([history])[0]

    def _rebuild(self) -> None:
        """Scorers and id lookup for the current catalogue (after loading or adding items)."""
        model_scorer = self._model_scorer = ModelScorer(self.model, COLD_MODEL_SCORER_NAME, self.batch_size)
        scorers = fused_scorers(self._fit, self.model.text.cpu().numpy(), self._baselines_cfg, model_scorer)
        self.fusion = FusionScorer.from_weights(scorers, self.bundle.fusion_weights, SERVED,
                                                self.bundle.fusion_cold_offset)
        self._index = dict(zip(self.catalogue["item"], self.catalogue["item_idx"]))
        by_idx = self.catalogue.set_index("item_idx").reindex(range(self.n_items + 1))   # row 0: padding
        self._ids, self._titles = by_idx["item"].to_numpy(object), by_idx["title"].to_numpy(object)
        self._log_popularity = np.log1p(self._fit.counts.astype(np.float64))
        self._segment_log_popularity = segment_log_popularity(self._segment_popularity, self._index, self._fit.counts,
                                                              self.serving.segment_prior)
        self._popular_picks: tuple[int, list[int]] = (0, [])   # (k asked, picks): see _popular_scores
        # unit-length item representations of the model: item-to-item similarity, added items included
        self._unit_items = F.normalize(model_scorer.items, dim=-1).cpu().numpy()

    # ------------------------------------------------------------------ Scorer contract
    def score(self, histories: Sequence[Sequence[int]]) -> np.ndarray:
        """[len(histories), n_items + 1] fused scores of item_idx histories (column 0 = padding)."""
        return self.fusion.score(histories)

    # ------------------------------------------------------------------ ids
    @property
    def n_items(self) -> int:
        return len(self.catalogue)

    @property
    def n_shoppers(self) -> int:
        return len(self._histories)

    @property
    def figures(self) -> dict[str, float]:
        """The evaluation's figures of this recommender (test, headline protocol)."""
        return headline(self.bundle.manifest)

    def knows(self, item: str) -> bool:
        return item in self._index

    def knows_shopper(self, user: str) -> bool:
        return user in self._histories

    def popularity_counts(self) -> np.ndarray:
        """Interactions per item_idx known when the test cases were scored (added items: 0)."""
        return self._fit.counts

    def item_text_vectors(self) -> np.ndarray:
        """[n_items + 1, text_dim] the items' text-encoder embeddings (row = item_idx)."""
        return self.model.text.cpu().numpy()

    def top_scores(self, histories: Sequence[Sequence[int]], k: int) -> np.ndarray:
        """[len(histories), k] each history's k best fused scores, best first, its own items
        hidden: the scores a greedy slate for it is served with."""
        out = []
        for chunk in batch_slices(len(histories), self.batch_size):
            scores = np.array(self.score(histories[chunk]), dtype=np.float64)
            for row, history in enumerate(histories[chunk]):
                scores[row, list(history)] = -np.inf
            out.append(-np.sort(-np.partition(scores, scores.shape[1] - k, axis=1)[:, -k:], axis=1))
        return np.concatenate(out) if out else np.zeros((0, k))

    def new_item_ids(self) -> list[str]:
        """Items the model knows by their text alone: new at training time, or added since."""
        unseen = np.flatnonzero(self.model.known.cpu().numpy() == 0)
        return [str(i) for i in self._ids[unseen[unseen > 0]]]

    def known_indices(self, items: Sequence[str]) -> list[int]:
        """item_idx of the items this version knows, in order; the others left out."""
        return [int(self._index[i]) for i in items if i in self._index]

    def item_indices(self, items: Sequence[str]) -> list[int]:
        unknown = [i for i in items if i not in self._index]
        if unknown:
            raise UnknownItems(f"{len(unknown)} unknown item ids (e.g. {unknown[:5]}): use ids from the "
                               "catalogue, or add new products first (`interest add-items`)")
        return [int(self._index[i]) for i in items]

    def user_history(self, user: str, since_training: Sequence[str] = ()) -> list[str]:
        """The shopper's training history, then what they engaged with since (served feedback)."""
        history = [*self._histories.get(user, ()), *since_training]
        if not history:
            raise InterestError(f"unknown shopper {user!r}: recommend by --history item ids or --text instead")
        return history

    def segment_of(self, user: str | None) -> int:
        """The known shopper's segment, NO_SEGMENT for anyone else."""
        return int(self._segments.get(user, NO_SEGMENT)) if user else NO_SEGMENT

    # ------------------------------------------------------------------ answers
    def policy(self, name: str | None = None, feedback: ItemFeedback | None = None) -> Policy:
        """The slate policy by name (default serving.policy), with its settings from params;
        thompson learns from `feedback` (none: its prior alone)."""
        cfg = self.serving
        name = name or cfg.policy
        if name == THOMPSON:
            shows, clicks = self._feedback_arrays(feedback or ItemFeedback())
            return Thompson(clicks, shows, cfg.thompson_prior_rate, cfg.thompson_prior_shows, cfg.temperature,
                            cfg.explore_pool, cfg.thompson_grid)
        policies = {GREEDY: Greedy(), EPSILON_GREEDY: EpsilonGreedy(cfg.epsilon, cfg.explore_pool),
                    SOFTMAX: Softmax(cfg.temperature, cfg.explore_pool)}
        if name not in policies:
            raise InterestError(f"unknown policy {name!r}: use one of {', '.join([*policies, THOMPSON])}")
        return policies[name]

    def _feedback_arrays(self, feedback: ItemFeedback) -> tuple[np.ndarray, np.ndarray]:
        """(shows, clicks) by item_idx, rebuilt only when the counts were reloaded."""
        cached = self._feedback_cache
        if cached is None or cached[0] != (feedback.version, self.n_items):
            shows, clicks = np.zeros(self.n_items + 1), np.zeros(self.n_items + 1)
            for item, (shown, clicked) in feedback.counts.items():
                if (idx := self._index.get(item)) is not None:
                    shows[idx], clicks[idx] = shown, clicked
            cached = self._feedback_cache = ((feedback.version, self.n_items), shows, clicks)
        return cached[1], cached[2]

    def recommend(self, **request) -> pd.DataFrame:
        """`rank` as a table (item, title, score, position, propensity, by, policy)."""
        return self.rank(**request).table()

    def rank(self, *, user: str | None = None, items: Sequence[str] = (), text: str | None = None,
             k: int | None = None, exclude: Sequence[str] = (), policy: str | None = None,
             since_training: Sequence[str] = (), hide_history: bool = True, feedback: ItemFeedback | None = None,
             rng: np.random.Generator | None = None, explain: bool = False) -> Ranked:
        """k items for one shopper, known by one
        of: a shopper id (pseudonymised; their history plus `since_training`, the items they
        engaged with since), recent item ids (oldest first), a free text; or by nothing (the
        diverse popular default). Items in `exclude`, and unless `hide_history` is off those in
        the history, are never returned. The slate is drawn by `policy` (default
        serving.policy); each item's propensity is the probability that the policy showed it at
        its position. serving.personalisation < 1 blends the scores toward popularity. `explain`:
        each item gets a short reason a shop can show (see explanations)."""
        given = [name for name, value in (("user", user), ("items", items), ("text", text)) if value]
        if len(given) > 1:
            raise InterestError(f"recommend by one of user, items or text, not {' and '.join(given)}")
        k = k or self.serving.top_k
        if k <= 0:
            raise InterestError(f"k must be a positive list length, got {k}")
        draw = self.policy(policy, feedback)
        hidden = self.item_indices(list(exclude))
        if user:
            items = self.user_history(user, since_training)
        history: list[int] = []
        if items:
            history = self.item_indices(list(items))
            hidden, by = (hidden + history if hide_history else hidden), BY_USER if user else BY_ITEMS
            scores = self._kept_scores(user, since_training, hidden, draw.reach(k))
            if scores is None:
                scores = self.personalised(self._score_one(history), len(history), self.segment_of(user))
        elif text:
            scores, by = self._model_scorer.score_texts(self.encode_texts([text]))[0], BY_TEXT
        else:
            scores, by = self._popular_scores(k + len(hidden)), BY_NOTHING
        ranked = self._slate(scores, k, hidden, by, draw, rng)
        if not explain:
            return ranked
        weight = personal_weight(self.serving.personalisation, len(history), self.serving.thin_history)
        return replace(ranked, reasons=self.explanations(ranked.items, history, text, weight))

    def _kept_scores(self, user: str | None, since_training: Sequence[str], hidden: Sequence[int],
                     reach: int) -> np.ndarray | None:
        """A known shopper's kept best scores, when they answer this request exactly: no
        engagement since training, the catalogue they were kept over, enough left after hiding."""
        tops = self._tops
        if not user or since_training or tops is None or tops.n_scored != self.n_items + 1:
            return None
        return tops.scores_of(user, hidden, reach)

    def explanations(self, shown: Sequence[str], history: Sequence[int], text: str | None,
                     personal: float = 1.0) -> tuple[str, ...]:
        """A short reason per shown item, from what scoring already has: the history item it is
        closest to in the model's item space, the query words its title shares, or popularity
        (the shopper's segment's, when the popularity blend outweighs the personal scores)."""
        shown_idx = self.item_indices(list(shown))
        if history and personal > 0.5:
            closest = np.asarray(history)[np.argmax(self._unit_items[shown_idx] @ self._unit_items[history].T, axis=1)]
            return tuple(f"like {self._name(i)}, which you engaged with" for i in closest)
        if history:
            return ("popular with shoppers like you",) * len(shown_idx)
        if text:
            asked = set(words(text))
            return tuple(f"matches {', '.join(repr(w) for w in sorted(common))}" if (common := asked & set(words(
                self._name(i)))) else "close in meaning to what you wrote" for i in shown_idx)
        return ("popular in the shop",) * len(shown_idx)

    def _name(self, idx: int) -> str:
        title = self._titles[idx]
        return str(self._ids[idx]) if pd.isna(title) else str(title)

    def similar_items(self, item: str, k: int | None = None, exclude: Sequence[str] = ()) -> Ranked:
        """The k items whose model representations are closest (cosine) to `item`'s: a catalogue
        item or one added since training (through its text)."""
        k = k or self.serving.top_k
        if k <= 0:
            raise InterestError(f"k must be a positive list length, got {k}")
        idx = self.item_indices([item])[0]
        return self._slate(self._unit_items @ self._unit_items[idx], k, [idx, *self.item_indices(list(exclude))],
                           BY_ITEM, Greedy())

    def _slate(self, scores: np.ndarray, k: int, hidden: Sequence[int], by: str, policy: Policy,
               rng: np.random.Generator | None = None) -> Ranked:
        """k items drawn by the policy, never a hidden one or the padding item."""
        scores = np.array(scores, dtype=np.float64)
        scores[list(hidden)] = -np.inf
        scores[0] = -np.inf
        slate = policy.draw(scores, k, rng or np.random.default_rng())
        return Ranked(self._ids[slate.items], self._titles[slate.items], scores[slate.items].round(4),
                      slate.propensities.round(6), by, policy.name)

    def personalised(self, scores: np.ndarray, n_history: int, segment: int = NO_SEGMENT) -> np.ndarray:
        """The fused scores of a history of n_history items, blended toward popularity (the
        segment's, else everyone's) as serving.personalisation and serving.thin_history say."""
        cfg = self.serving
        weight = personal_weight(cfg.personalisation, n_history, cfg.thin_history)
        if weight == 1:
            return scores
        return blend_with_popularity(scores, self._segment_log_popularity.get(segment, self._log_popularity), weight)

    def _popular_scores(self, k: int) -> np.ndarray:
        """The diverse popular default's k picks, best first, as scores. Its picks are made one at
        a time whatever k is, so the longest list made so far serves every shorter one."""
        asked, picks = self._popular_picks
        if asked < k:
            picks = popular_diverse_default(self._fit.counts, self.model.text.cpu().numpy(), k,
                                            self.serving.default_pool, self.serving.default_diversity)
            self._popular_picks = (k, picks)
        picks = picks[:k]
        scores = np.full(self.n_items + 1, -np.inf)
        scores[picks] = np.arange(len(picks), 0, -1)
        return scores

    # ------------------------------------------------------------------ text and new products
    def encode_texts(self, texts: Sequence[str]) -> np.ndarray:
        """Text embeddings from the bundle's encoder (loaded on first use, by one thread: two
        requests importing transformers at once in a worker failed with an ImportError)."""
        return self.text_encoder().encode(list(texts), self.text_settings.batch_size)

    def text_encoder(self) -> TextEncoder:
        """The bundle's text encoder, loaded once (the service loads it at start: no request waits)."""
        if self._encoder is None:
            with self._encoder_loading:
                if self._encoder is None:
                    cfg = self.text_settings
                    self._encoder = load_text_encoder(cfg.encoder, self.model.text.device, cfg.max_tokens)
        return self._encoder

    def encode_items(self, items: pd.DataFrame) -> np.ndarray:
        cfg = self.text_settings
        return self.encode_texts(item_texts(items, list(cfg.fields), cfg.max_chars))

    def add_items(self, added: AddedItems) -> pd.DataFrame:
        """New products join the catalogue at once, represented through the model's text path
        (no retraining); ids the catalogue already holds are refused. Returns item, item_idx."""
        known = [i for i in added.items["item"] if i in self._index]
        if known:
            raise InterestError(f"{len(known)} items are already in the catalogue (e.g. {known[:3]}); "
                                "give new item ids")
        start = self.n_items + 1
        rows = added.items.assign(item_idx=np.arange(start, start + len(added.items)))
        self.model = extend_catalogue(self.model, torch.as_tensor(added.vectors, dtype=torch.float32))
        n = self.n_items + len(rows) + 1
        similarity = self._fit.similarity.copy()
        similarity.resize((n, n))
        self._fit = BaselineFit(np.concatenate([self._fit.counts, np.zeros(len(rows), dtype=self._fit.counts.dtype)]),
                                sp.csr_matrix(similarity))
        self.catalogue = pd.concat([self.catalogue, rows.reindex(columns=self.catalogue.columns)], ignore_index=True)
        self._rebuild()
        log.info("added %d products: catalogue now %d items", len(rows), self.n_items)
        return rows[["item", "item_idx"]]


def load_recommender(params: Params, tag: str | None = None, bundle_dir: Path | None = None) -> Recommender:
    """The Recommender of a registered version (default: the one in production, else the latest)
    or of a bundle folder, with the products added so far (serving.added_items_dir) in its catalogue."""
    if bundle_dir is not None:
        bundle, tag = Bundle.open(bundle_dir), str(bundle_dir)
    else:
        bundle, metadata = registered(params, tag or production_tag(params))
        tag = metadata["tag"]
    recommender = Recommender(bundle, tag, params.serving, select_device(params.serving.device),
                              params.evaluate.batch_size)
    catch_up_added(params, recommender)
    return recommender


def catch_up_added(params: Params, recommender: Recommender) -> int:
    """Add the kept products (serving.added_items_dir) that the recommender does not know yet."""
    added = load_added(params.path(params.serving.added_items_dir))
    if added is None:
        return 0
    fresh = ~added.items["item"].isin(set(recommender.catalogue["item"]))
    if fresh.any():
        recommender.add_items(AddedItems(added.items[fresh].reset_index(drop=True), added.vectors[fresh.to_numpy()]))
    return int(fresh.sum())


def add_and_keep(params: Params, recommender: Recommender, new: pd.DataFrame) -> dict:
    """New products (item, title and any of brand, categories, description) join the
    recommender's catalogue at once, with no retraining, and are kept for every later load."""
    added = AddedItems(new, recommender.encode_items(new))
    rows = recommender.add_items(added)
    stored = append_added(params.path(params.serving.added_items_dir), added)
    return {"added": len(rows), "added_in_all": len(stored.items), "item_idx": rows["item_idx"].tolist()}


def add_items_from_file(params: Params, file: Path) -> dict:
    """`interest add-items`: the products of a CSV or JSON-lines file, into the served catalogue."""
    new = read_new_items(file)
    return add_and_keep(params, load_recommender(params), new)
