"""Cold start: recommendations for products and shoppers the model has never seen.

New products are represented from their text through the model's text path; the cold-start
fine-tuning fits a small adapter (on warm items only) that adds to the text path what a trained
item's ID part would contribute, so text-only representations rank where trained ones would, and
a text match between the shopper's history text and each item's text (every item gets it; new
products get calibrated extra exposure on top). New shoppers
are served from a free-text statement of interests (read as a one-item history through the same
text path), from their first few interactions, or, with nothing, from a diverse popular default.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd
import torch
from torch.nn import functional as F
from tqdm.auto import tqdm

from components.config import ColdStartParams, Params
from components.device import select_device
from components.metrics import case_metrics, target_ranks
from components.model import InterestModel, SeqRecConfig, extend_catalogue
from components.recommender import load_checkpoint, model_path, save_checkpoint

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Positions:
    """Shopper states of a frozen model at positions with a known next item: what the adapter is
    fitted to rank for. seqs [S, L]; rows/upto: each position's sequence and column; states
    [P, hidden]; targets [P]."""
    seqs: torch.Tensor
    rows: torch.Tensor
    upto: torch.Tensor
    states: torch.Tensor
    targets: torch.Tensor

    def __len__(self) -> int:
        return len(self.targets)

    def take(self, idx: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        return self.states[idx], self.rows[idx], self.upto[idx], self.targets[idx]


@torch.inference_mode()
def frozen_positions(model: InterestModel, seqs: torch.Tensor, targets: torch.Tensor,
                     batch_size: int) -> Positions:
    """seqs/targets [S, L] (0 = no target), as in training; states computed once in eval mode."""
    model.eval()
    device = model.known.device
    states, rows, upto = [], [], []
    for start in range(0, len(seqs), batch_size):
        x, y = seqs[start:start + batch_size].to(device), targets[start:start + batch_size].to(device)
        keep = y != 0
        states.append(model.user_states(x)[keep])
        r, c = torch.nonzero(keep, as_tuple=True)
        rows.append(r + start)
        upto.append(c)
    seqs, targets = seqs.to(device), targets.to(device)
    rows_t = torch.cat(rows)
    upto_t = torch.cat(upto)
    return Positions(seqs, rows_t, upto_t, torch.cat(states), targets[rows_t, upto_t])


def _logits(adapted: InterestModel, items: torch.Tensor, text_only: torch.Tensor,
            positions: Positions, idx: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Catalogue logits of some positions when the items text_only are known by text alone (the
    adapter's output, differentiable) and every other seen item by its trained representation."""
    h, rows, upto, t = positions.take(idx)
    logits = (h @ items.T).index_copy(1, text_only, h @ adapted.text_representation(adapted.text[text_only]).T)
    logits = adapted.add_repeat_bias(logits, rows, positions.seqs, upto)
    logits = adapted.add_text_match(logits, adapted.text_profile(positions.seqs[rows], upto), text_only)
    return logits.masked_fill(adapted.known == 0, float("-inf")), t


@torch.no_grad()
def case_ndcg(adapted: InterestModel, items: torch.Tensor, text_only: torch.Tensor, positions: Positions,
              batch_size: int) -> torch.Tensor:
    """NDCG@10 of every position's target when the items text_only are known by text alone
    (the evaluation's own rank and metric functions: ties count against the target)."""
    adapted.eval()
    ranks = [target_ranks(*(t.cpu().numpy() for t in _logits(adapted, items, text_only, positions, idx)))
             for idx in torch.arange(len(positions), device=items.device).split(batch_size)]
    return torch.from_numpy(case_metrics(np.concatenate(ranks), [10])["ndcg@10"])


@torch.no_grad()
def calibrate_exposure(adapted: InterestModel, items: torch.Tensor, held: torch.Tensor, select_on: Positions,
                       cfg: ColdStartParams, warm_reference: float) -> dict:
    """Sets the text match's weight and offset: for each weight (the fitted one times each of
    cfg.exposure_scales) the largest offset whose warm-target NDCG@10 stays within
    cfg.max_warm_drop of warm_reference (bisection: warm NDCG only falls as the offset rises),
    then the weight whose held-out items rank best. The fitted objective weighs every position
    alike; this states the shop's trade-off instead: new products get as much exposure as the
    allowed warm-item cost buys."""
    held_targets = torch.isin(select_on.targets, held)
    floor = (1 - cfg.max_warm_drop) * warm_reference
    fitted_weight = float(adapted.cold_match[0].clamp(min=1e-3))

    def measure(weight: float, offset: float) -> tuple[float, float]:
        adapted.cold_match.copy_(torch.tensor([weight, offset]))
        ndcg = case_ndcg(adapted, items, held, select_on, cfg.batch_size)
        return float(ndcg[~held_targets].mean()), float(ndcg[held_targets].mean())

    best = {"text_only_ndcg@10": -1.0}
    for scale in cfg.exposure_scales:
        weight, (low, high) = fitted_weight * scale, cfg.offset_range
        for _ in range(cfg.bisection_steps):
            mid = (low + high) / 2
            low, high = (mid, high) if measure(weight, mid)[0] >= floor else (low, mid)
        warm, text_only = measure(weight, low)
        log.info("exposure: weight %.2f offset %.2f -> warm NDCG@10 %.4f, held-out items %.4f",
                 weight, low, warm, text_only)
        if warm >= floor and text_only > best["text_only_ndcg@10"]:
            best = {"weight": weight, "offset": low, "warm_ndcg@10": warm, "text_only_ndcg@10": text_only}
    if "weight" not in best:   # not even the lowest offset keeps the budget: show new items least
        best = {"weight": fitted_weight, "offset": cfg.offset_range[0], "warm_ndcg@10": float("nan"),
                "text_only_ndcg@10": float("nan")}
    adapted.cold_match.copy_(torch.tensor([best["weight"], best["offset"]]))
    return {k: round(v, 6) for k, v in best.items()}


@torch.no_grad()
def choose_text_weight(adapted: InterestModel, items: torch.Tensor, held: torch.Tensor, select_on: Positions,
                       cfg: ColdStartParams) -> dict:
    """Sets the weight of the text match every item gets: the one of cfg.text_weights with the
    best warm-target NDCG@10 on select_on. Chosen there, not fitted on training positions: the
    frozen model already fits those targets, so in-sample states would undervalue the text."""
    held_targets = torch.isin(select_on.targets, held)
    tried = {}
    for weight in cfg.text_weights:
        adapted.cold_text.fill_(weight)
        tried[weight] = float(case_ndcg(adapted, items, held, select_on, cfg.batch_size)[~held_targets].mean())
        log.info("text match weight %g: warm NDCG@10 %.4f", weight, tried[weight])
    best = max(tried, key=tried.get)
    adapted.cold_text.fill_(best)
    return {"weight": best, "warm_ndcg@10": round(tried[best], 6)}


def cold_state(model: InterestModel) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items() if k.startswith("cold_")}


def fit_cold_adapter(model: InterestModel, fit_on: Positions, select_on: Positions,
                     cfg: ColdStartParams) -> tuple[InterestModel, dict]:
    """A copy of the trained model with a cold-start adapter fitted on warm items only.

    Each step shows a random share of warm items by their text alone, as new products will be,
    and trains the adapter with the model's own objective (softmax over the catalogue) at the
    frozen shopper states: a text-only item learns to rank where its trained twin would, and not
    to push trained items out of lists where it does not belong, so scale and popularity are
    calibrated along with direction. Held-out warm items never take part; the epoch whose
    NDCG@10 on select_on (held-out items text-only) is best is kept, the plain text path
    (zero-initialised adapter) included. The trained weights stay frozen: warm items keep
    exactly their representations; their scores change only by the text match every item gets
    (its weight chosen on select_on first, 0 among the choices).
    """
    torch.manual_seed(cfg.seed)
    adapted = InterestModel(SeqRecConfig(**{**model.cfg.to_dict(), "cold_adapter": cfg.adapter_hidden,
                                            "cold_profile_decay": cfg.profile_decay}),
                            model.text, model.known).to(model.known.device)
    missing = adapted.load_state_dict(model.state_dict(), strict=False).missing_keys
    assert all(k.startswith("cold_") for k in missing), missing
    torch.nn.init.zeros_(adapted.cold_adapter[-1].weight)
    torch.nn.init.zeros_(adapted.cold_adapter[-1].bias)
    for name, p in adapted.named_parameters():
        p.requires_grad_(name.startswith(("cold_adapter", "cold_match")))
    with torch.no_grad():
        items = adapted.item_representations()
    gen = torch.Generator().manual_seed(cfg.seed)
    warm = torch.nonzero(model.known > 0).squeeze(1).cpu()
    perm = warm[torch.randperm(len(warm), generator=gen)]
    n_hold = max(1, int(len(perm) * cfg.holdout_fraction))
    held, pool = perm[:n_hold].to(items.device), perm[n_hold:]
    n_text_only = max(1, int(len(warm) * cfg.text_only_fraction))
    held_targets = torch.isin(select_on.targets, held)
    text_match = choose_text_weight(adapted, items, held, select_on, cfg)

    def selection() -> dict[str, float]:
        ndcg = case_ndcg(adapted, items, held, select_on, cfg.batch_size)
        return {"ndcg@10": float(ndcg.mean()), "ndcg@10_text_only_targets": float(ndcg[held_targets].mean())}

    optim = torch.optim.AdamW([{"params": adapted.cold_adapter.parameters(), "lr": cfg.lr},
                               {"params": [adapted.cold_match], "lr": cfg.match_lr}])
    start = selection()
    best, best_epoch, best_state = start["ndcg@10"], 0, cold_state(adapted)
    history = []
    for epoch in tqdm(range(1, cfg.epochs + 1), desc="cold-start adapter", unit="epoch", mininterval=5):
        adapted.train()
        losses = []
        for idx in torch.randperm(len(fit_on), generator=gen).split(cfg.batch_size):
            text_only = pool[torch.randperm(len(pool), generator=gen)[:n_text_only]].to(items.device)
            loss = F.cross_entropy(*_logits(adapted, items, text_only, fit_on, idx.to(items.device)))
            optim.zero_grad(set_to_none=True)
            loss.backward()
            optim.step()
            losses.append(loss.item())
        record = {"epoch": epoch, "loss": float(np.mean(losses)), **{f"select_{k}": v for k, v in selection().items()}}
        history.append(record)
        log.info("adapter epoch %d: loss %.4f, NDCG@10 %.4f (text-only targets %.4f)", epoch, record["loss"],
                 record["select_ndcg@10"], record["select_ndcg@10_text_only_targets"])
        if record["select_ndcg@10"] > best:
            best, best_epoch = record["select_ndcg@10"], epoch
            best_state = cold_state(adapted)
    adapted.load_state_dict(best_state, strict=False)
    reference = float(case_ndcg(model, items, held, select_on, cfg.batch_size)[~held_targets].mean())
    exposure = calibrate_exposure(adapted, items, held, select_on, cfg, reference)
    for p in adapted.parameters():
        p.requires_grad_(True)
    after = history[best_epoch - 1] if best_epoch else {"select_ndcg@10": start["ndcg@10"],
                                                         "select_ndcg@10_text_only_targets": start["ndcg@10_text_only_targets"]}
    summary = {"warm_items": int(len(warm)), "heldout_items": int(n_hold), "fit_positions": len(fit_on),
               "select_positions": len(select_on), "epochs": cfg.epochs, "best_epoch": best_epoch,
               "heldout_ndcg@10_text_path": round(start["ndcg@10"], 6),
               "heldout_ndcg@10_adapted": round(after["select_ndcg@10"], 6),
               "heldout_text_only_targets_ndcg@10_text_path": round(start["ndcg@10_text_only_targets"], 6),
               "heldout_text_only_targets_ndcg@10_adapted": round(after["select_ndcg@10_text_only_targets"], 6),
               "warm_ndcg@10_text_path": round(reference, 6), "text_match": text_match, "exposure": exposure}
    log.info("cold-start adapter: NDCG@10 with held-out items text-only %.4f -> %.4f (on their own cases %.4f -> %.4f); "
             "after exposure calibration: warm %.4f (text path %.4f), held-out items %.4f",
             start["ndcg@10"], after["select_ndcg@10"], start["ndcg@10_text_only_targets"],
             after["select_ndcg@10_text_only_targets"], exposure["warm_ndcg@10"], reference, exposure["text_only_ndcg@10"])
    return adapted.eval(), {"summary": summary, "history": history}


def adapter_positions(model: InterestModel, params: Params) -> tuple[Positions, Positions]:
    """What the adapter is fitted on (every training position) and selected on (the valid cases,
    each shopper's state after their history, as the test will see it)."""
    from components.recommender import left_pad
    from components.split import load_split
    from components.train import training_tensors

    split = load_split(params)
    batch = params.train.eval_batch_size
    fit_on = frozen_positions(model, *training_tensors(split.train, model.cfg.max_len), batch)
    valid = split.cases[split.cases["split"] == "valid"]
    seqs = left_pad(list(valid["history"]), model.cfg.max_len)
    targets = torch.zeros_like(seqs)
    targets[:, -1] = torch.tensor(valid["target"].to_numpy())
    return fit_on, frozen_positions(model, seqs, targets, batch)


def cold_model_path(params: Params) -> Path:
    return params.path(params.coldstart.model_file)


def run_finetune_cold(params: Params) -> dict:
    """Fit the adapter to the trained checkpoint and save the adapted model as its own artefact."""
    from components.io import write_json

    model, payload = load_checkpoint(model_path(params), select_device(params.coldstart.device))
    adapted, result = fit_cold_adapter(model, *adapter_positions(model, params), params.coldstart)
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
