"""Cold start: recommendations for products and shoppers the model has never seen.

New products are represented from their text through the model's text path; the cold-start
fine-tuning fits a small adapter (on warm items only) that predicts from text the ID part a
trained item would have, so text-only representations land where trained ones are. New shoppers
are served from a free-text statement of interests (read as a one-item history through the same
text path), from their first few interactions, or, with nothing, from a diverse popular default.
"""
from __future__ import annotations

import copy
import logging
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd
import torch
from torch.nn import functional as F

from components.config import ColdStartParams, Params
from components.device import select_device
from components.model import InterestModel, SeqRecConfig, extend_catalogue
from components.recommender import load_checkpoint, model_path, save_checkpoint

log = logging.getLogger(__name__)


def fit_cold_adapter(model: InterestModel, cfg: ColdStartParams) -> tuple[InterestModel, dict]:
    """A copy of the trained model with a cold-start adapter fitted on warm items only.

    The adapter regresses, from an item's text, the ID embedding a trained item has (squared
    error: scores are dot products with the representation, so that is the error that matters).
    It starts at zero (the plain text path) and the epoch with the lowest error on held-out warm
    items is kept, so it never does worse there than the text path alone. The trained weights
    stay frozen: warm items keep exactly their representations.
    """
    torch.manual_seed(cfg.seed)
    adapted = InterestModel(SeqRecConfig(**{**model.cfg.to_dict(), "cold_adapter": cfg.adapter_hidden}),
                            model.text, model.known).to(model.known.device)
    missing = adapted.load_state_dict(model.state_dict(), strict=False).missing_keys
    assert all(k.startswith("cold_adapter.") for k in missing), missing
    torch.nn.init.zeros_(adapted.cold_adapter[-1].weight)
    torch.nn.init.zeros_(adapted.cold_adapter[-1].bias)
    for name, p in adapted.named_parameters():
        p.requires_grad_(name.startswith("cold_adapter."))
    warm = torch.nonzero(model.known > 0).squeeze(1)
    perm = warm[torch.randperm(len(warm), generator=torch.Generator().manual_seed(cfg.seed))]
    n_hold = max(1, int(len(perm) * cfg.holdout_fraction))
    held, fit_on = perm[:n_hold], perm[n_hold:]
    target = adapted.item_id.weight.detach()

    def error(idx: torch.Tensor) -> torch.Tensor:
        return F.mse_loss(adapted.cold_adapter(adapted.text[idx]), target[idx])

    optim = torch.optim.AdamW(adapted.cold_adapter.parameters(), lr=cfg.lr)
    with torch.no_grad():
        best = text_only = float(error(held))
    best_state = copy.deepcopy(adapted.cold_adapter.state_dict())
    history, gen = [], torch.Generator().manual_seed(cfg.seed)
    for epoch in range(1, cfg.epochs + 1):
        adapted.train()
        for idx in fit_on[torch.randperm(len(fit_on), generator=gen)].split(cfg.batch_size):
            loss = error(idx)
            optim.zero_grad(set_to_none=True)
            loss.backward()
            optim.step()
        adapted.eval()
        with torch.no_grad():
            held_error = float(error(held))
        history.append({"epoch": epoch, "heldout_mse": held_error})
        if held_error < best:
            best, best_state = held_error, copy.deepcopy(adapted.cold_adapter.state_dict())
    adapted.cold_adapter.load_state_dict(best_state)
    for p in adapted.parameters():
        p.requires_grad_(True)
    summary = {"warm_items": int(len(warm)), "heldout_items": int(n_hold), "epochs": cfg.epochs,
               "heldout_mse_text_only": round(text_only, 6), "heldout_mse_adapted": round(best, 6),
               "best_epoch": next((h["epoch"] for h in history if h["heldout_mse"] == best), 0)}
    log.info("cold-start adapter: held-out warm items' representation error (MSE) %.6f -> %.6f",
             text_only, best)
    return adapted.eval(), {"summary": summary, "history": history}


def cold_model_path(params: Params) -> Path:
    return params.path(params.coldstart.model_file)


def run_finetune_cold(params: Params) -> dict:
    """Fit the adapter to the trained checkpoint and save the adapted model as its own artefact."""
    from components.io import write_json

    model, payload = load_checkpoint(model_path(params), select_device(params.coldstart.device))
    adapted, result = fit_cold_adapter(model, params.coldstart)
    items = pd.DataFrame({"item": payload["items"], "item_idx": np.arange(1, len(payload["items"]) + 1)})
    save_checkpoint(cold_model_path(params), adapted, items, {**payload["meta"], "cold_adapter": result["summary"]})
    write_json(result["summary"], params.path(params.coldstart.adapter_metrics_file))
    return result["summary"]


# --------------------------------------------------------------------------- new shoppers
def popular_diverse_default(train_counts: np.ndarray, text: np.ndarray, k: int, pool: int,
                            diversity: float) -> list[int]:
    """For a shopper with no history: popular items, picked by maximal marginal relevance so the
    list is not k near-identical bestsellers (text cosine as the similarity)."""
    counts = np.asarray(train_counts, dtype=np.float64).copy()
    counts[0] = -1
    candidates = list(np.argsort(-counts, kind="stable")[:pool])
    relevance = counts[candidates] / max(counts[candidates].max(), 1.0)
    chosen: list[int] = []
    while candidates and len(chosen) < k:
        if chosen:
            sim = (text[candidates] @ text[chosen].T).max(axis=1)
        else:
            sim = np.zeros(len(candidates))
        best = int(np.argmax((1 - diversity) * relevance - diversity * sim))
        chosen.append(int(candidates.pop(best)))
        relevance = np.delete(relevance, best)
    return chosen


class TextQueryScorer:
    """Scores for shoppers known only by a text: each query's encoder embedding goes through the
    model's text path as a one-item history."""

    def __init__(self, model: InterestModel, name: str):
        self.model, self.name = model.eval(), name
        with torch.inference_mode():
            self.items = model.item_representations()

    def score(self, query_text: np.ndarray) -> np.ndarray:
        q = torch.as_tensor(query_text, dtype=torch.float32, device=self.items.device)
        return self.model.score_text_queries(q, self.items).float().cpu().numpy()


def truncate_histories(histories: Sequence[Sequence[int]], k: int) -> list[list[int]]:
    """The first k items of each history: the shopper as they were after k interactions."""
    return [list(h)[:k] for h in histories]


# --------------------------------------------------------------------------- new products
def index_new_items(existing: pd.DataFrame, new_items: pd.DataFrame) -> pd.DataFrame:
    """item, item_idx for new_items, numbered after the catalogue; refuses ids it already has."""
    known_ids = set(existing["item"])
    dup = [i for i in new_items["item"] if i in known_ids]
    if dup:
        raise ValueError(f"{len(dup)} items are already in the catalogue (e.g. {dup[:3]}); give new item ids")
    start = int(existing["item_idx"].max()) + 1
    return new_items[["item"]].assign(item_idx=np.arange(start, start + len(new_items)))


def add_items(model: InterestModel, existing: pd.DataFrame, new_items: pd.DataFrame,
              new_text: np.ndarray) -> tuple[InterestModel, pd.DataFrame]:
    """Catalogue grows by new_items (their text embeddings new_text) with no retraining."""
    added = index_new_items(existing, new_items)
    return extend_catalogue(model, torch.as_tensor(new_text)), pd.concat([existing, added], ignore_index=True)


# --------------------------------------------------------------------------- serving catalogue
def added_items_paths(params: Params) -> dict[str, Path]:
    d = params.path(params.coldstart.added_items_dir)
    return {"items": d / "items.parquet", "text": d / "text.npy"}


def load_serving_model(params: Params) -> tuple[InterestModel, pd.DataFrame]:
    """The cold-start model (the trained one if not fine-tuned) with every added product in its
    catalogue, and the catalogue: item, item_idx, title."""
    from components.io import read_parquet
    from components.validate import validated_paths

    path = cold_model_path(params) if cold_model_path(params).is_file() else model_path(params)
    model, payload = load_checkpoint(path, select_device(params.coldstart.device))
    titles = read_parquet(validated_paths(params)["items"])[["item", "title"]]
    catalogue = pd.DataFrame({"item": payload["items"], "item_idx": np.arange(1, len(payload["items"]) + 1)})
    catalogue = catalogue.merge(titles, on="item", how="left")
    paths = added_items_paths(params)
    if paths["items"].is_file():
        added = read_parquet(paths["items"])
        model, _ = add_items(model, catalogue, added, np.load(paths["text"]))
        catalogue = pd.concat([catalogue, added[["item", "item_idx", "title"]]], ignore_index=True)
    return model, catalogue


def run_add_items(params: Params, file: Path) -> dict:
    """Embed and index new products from a CSV or JSON-lines file (columns: item, title and any of
    brand, categories, description); they are recommendable at once, with no retraining."""
    from components.embed import item_texts
    from components.errors import DataSourceError
    from components.io import read_parquet, write_npy, write_parquet
    from components.text_encoder import load_text_encoder

    if not Path(file).is_file():
        raise DataSourceError(f"{file}: file not found")
    new = pd.read_json(file, lines=True) if str(file).endswith((".jsonl", ".json")) else pd.read_csv(file)
    if "item" not in new or new["item"].isna().any():
        raise DataSourceError(f"{file}: every row needs an `item` id (columns: item, title, brand, categories, description)")
    new["item"] = new["item"].astype(str)
    if new["item"].duplicated().any():
        raise DataSourceError(f"{file}: item ids repeat: {new.loc[new['item'].duplicated(), 'item'].tolist()[:5]}")
    _, catalogue = load_serving_model(params)
    try:
        rows = index_new_items(catalogue, new).merge(new, on="item")
    except ValueError as exc:
        raise DataSourceError(f"{file}: {exc}") from exc
    cfg = params.embed
    encoder = load_text_encoder(cfg.encoder, select_device(cfg.device), cfg.max_tokens)
    vectors = encoder.encode(item_texts(new, list(cfg.fields), cfg.max_chars), cfg.batch_size, progress=True)
    paths = added_items_paths(params)
    if paths["items"].is_file():
        rows = pd.concat([read_parquet(paths["items"]), rows], ignore_index=True)
        vectors = np.concatenate([np.load(paths["text"]), vectors])
    write_parquet(rows.reindex(columns=["item", "item_idx", "title", "brand", "categories", "description"]), paths["items"])
    write_npy(vectors, paths["text"])
    log.info("added %d products (now %d added in all)", len(new), len(rows))
    return {"added": len(new), "added_in_all": len(rows), "item_idx": rows["item_idx"].tail(len(new)).tolist()}


def recommend(params: Params, text: str | None = None, history: Sequence[str] = (), k: int | None = None) -> pd.DataFrame:
    """Top-k products for a shopper known by a statement of interests, by their first item ids, or
    by nothing at all (the diverse popular default). Items in the history are not recommended."""
    from components.baselines import train_counts
    from components.errors import InterestError
    from components.recommender import ModelScorer
    from components.split import load_split
    from components.text_encoder import load_text_encoder

    k = k or params.coldstart.top_k
    model, catalogue = load_serving_model(params)
    idx = dict(zip(catalogue["item"], catalogue["item_idx"]))
    unknown = [i for i in history if i not in idx]
    if unknown:
        raise InterestError(f"unknown item ids {unknown[:5]}: use ids from the catalogue (or add them with `interest add-items`)")
    if text:
        cfg = params.embed
        query = load_text_encoder(cfg.encoder, select_device(cfg.device), cfg.max_tokens).encode([text], 1)
        scores = TextQueryScorer(model, "text_query").score(query)[0]
    elif history:
        scores = ModelScorer(model).score([[idx[i] for i in history]])[0]
        scores[[idx[i] for i in history]] = -np.inf
    else:
        counts = np.zeros(len(catalogue) + 1)
        base = train_counts(load_split(params))
        counts[: len(base)] = base
        picks = popular_diverse_default(counts, model.text.cpu().numpy(), k, params.coldstart.default_pool,
                                        params.coldstart.default_diversity)
        scores = np.full(len(catalogue) + 1, -np.inf)
        scores[picks] = np.arange(len(picks), 0, -1)
    top = np.argsort(-scores[1:], kind="stable")[:k] + 1  # never the padding item
    out = catalogue.set_index("item_idx").loc[top, ["item", "title"]].reset_index()
    return out.assign(score=scores[top].round(4))
