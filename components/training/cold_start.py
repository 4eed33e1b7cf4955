"""Cold-start fine-tuning: fit what products the model has never seen need to compete.

New products are represented from their text through the model's text path. This step fits, on
warm items only and with the trained weights frozen, a small adapter that adds to the text path
what a trained item's ID part would contribute, so text-only representations rank where trained
ones would; it chooses the weight of a text match between the shopper's history text and every
item's text, and calibrates the extra exposure text-only items get within a warm-item budget.
"""
from __future__ import annotations

import logging
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Iterator

import numpy as np
import pandas as pd
import torch
from tqdm.auto import tqdm

from components.core.batch_slices import batch_slices
from components.core.config.schema import ColdStartParams, Params
from components.core.device import select_device
from components.core.io import write_json
from components.data.split import load_split
from components.evaluation.metrics import case_metrics, target_ranks
from components.models.checkpoint import (cold_model_path, final_cold_model_path, final_model_path, load_checkpoint,
                                          model_path, save_checkpoint)
from components.models.interest_model import InterestModel, InterestModelConfig, left_pad
from components.models.interest_scorer import ModelScorer
from components.training.seeding import seeded
from components.training.train import training_tensors, trim_padding

log = logging.getLogger(__name__)

# what the fitting adds to a trained model (its state-dict prefixes); everything else stays frozen
COLD_START_PARTS = ("cold_adapter", "text_match", "text_only_match")


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
    """seqs/targets [S, L] (0 = no target), as in training; states computed once in eval mode,
    shortest sequences first, each chunk trimmed of its all-padding columns."""
    model.eval()
    device = model.known.device
    order = torch.argsort((seqs != 0).sum(1), stable=True)
    states, rows, upto = [], [], []
    for chunk in batch_slices(len(seqs), batch_size):
        members = order[chunk]
        x, y = (t.to(device) for t in trim_padding(seqs[members], targets[members]))
        keep = y != 0
        if keep[:, :-1].any():
            states.append(model.user_states(x)[keep])
        else:                                  # targets at the last position alone (train.every_prefix)
            states.append(model.user_states(x, last_only=True)[keep[:, -1:]])
        r, c = torch.nonzero(keep, as_tuple=True)
        rows.append(members.to(device)[r])
        upto.append(c + seqs.shape[1] - x.shape[1])
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


@dataclass(frozen=True)
class ShownByIdLogits:
    """Per position, with every warm item shown by its trained representation: the log-sum-exp of
    the catalogue's logits, the target's logit and the history's text profile. Fitting the
    adapter changes only the logits of the few items a step shows by text, so from these a step's
    cross-entropy needs those items' logits alone (adapter_loss), not a pass over the catalogue."""
    logsumexp: torch.Tensor
    target: torch.Tensor
    profile: torch.Tensor


@torch.no_grad()
def shown_by_id_logits(adapted: InterestModel, items: torch.Tensor, positions: Positions,
                       batch_size: int) -> ShownByIdLogits:
    none = torch.empty(0, dtype=torch.long, device=items.device)
    lse, target, profile = [], [], []
    for idx in torch.arange(len(positions), device=items.device).split(batch_size):
        logits, t = _logits(adapted, items, none, positions, idx)
        lse.append(torch.logsumexp(logits, 1))
        target.append(logits.gather(1, t.unsqueeze(1)).squeeze(1))
        _, rows, upto, _ = positions.take(idx)
        profile.append(adapted.text_profile(positions.seqs[rows], upto))
    return ShownByIdLogits(torch.cat(lse), torch.cat(target), torch.cat(profile))


def adapter_loss(adapted: InterestModel, items: torch.Tensor, text_only: torch.Tensor, positions: Positions,
                 by_id: ShownByIdLogits, idx: torch.Tensor) -> torch.Tensor:
    """The mean cross-entropy of _logits(adapted, items, text_only, positions, idx) (the same
    figure up to float rounding): the text-only items' logits (text path, adapter, match) take the
    place of their trained ones inside the catalogue's log-sum-exp."""
    h, rows, upto, t = positions.take(idx)
    similarity = by_id.profile[idx] @ adapted.text[text_only].T                            # [R, T]
    shared = adapted.text_match * similarity                          # every item's text match
    if adapted.cfg.repeat_bias:                                       # items at or before upto: once
        seqs = positions.seqs[rows]
        before = torch.arange(seqs.shape[1], device=seqs.device) <= upto.unsqueeze(1)   # [R, L]
        history = torch.zeros(len(seqs), len(items), dtype=torch.bool, device=seqs.device)
        history.scatter_(1, torch.where(before, seqs, 0), True)      # column 0 (padding): never text-only
        shared = shared + adapted.repeat * history[:, text_only]
    trained = (h @ items[text_only].T + shared).double()
    shown = (h @ adapted.text_representation(adapted.text[text_only]).T + shared
             + adapted.text_only_match[0] * similarity + adapted.text_only_match[1])
    lse = by_id.logsumexp[idx].double()
    removed = torch.exp(trained - lse.unsqueeze(1)).sum(1)            # their share of the softmax
    rest = lse + torch.log1p(-removed.clamp(max=1 - 1e-12))
    total = torch.logsumexp(torch.cat([rest.unsqueeze(1), shown.double()], 1), 1)
    is_target = text_only.view(1, -1) == t.view(-1, 1)                                     # [R, T]
    target = torch.where(is_target.any(1), (shown.double() * is_target).sum(1), by_id.target[idx].double())
    return (total - target).mean().float()


@torch.no_grad()
def case_ndcg(adapted: InterestModel, items: torch.Tensor, text_only: torch.Tensor, positions: Positions,
              batch_size: int) -> torch.Tensor:
    """NDCG@10 of every position's target when the items text_only are known by text alone
    (the evaluation's own rank and metric functions: ties count against the target)."""
    adapted.eval()
    ranks = [target_ranks(*(t.cpu().numpy() for t in _logits(adapted, items, text_only, positions, idx)))
             for idx in torch.arange(len(positions), device=items.device).split(batch_size)]
    return torch.from_numpy(case_metrics(np.concatenate(ranks), [10])["ndcg@10"])


@contextmanager
def _trying(parameter: torch.nn.Parameter, value: list[float] | float) -> Iterator[None]:
    """Measure with the parameter set to value; its own value is back afterwards."""
    saved = parameter.detach().clone()
    with torch.no_grad():
        parameter.copy_(torch.tensor(value))
    try:
        yield
    finally:
        with torch.no_grad():
            parameter.copy_(saved)


@dataclass(frozen=True)
class HeldOutScores:
    """Per position, what its target's rank needs when only the held-out items' scores move (by
    weight x similarity + offset): their unmoved scores and similarities [P, H], the target's
    column among them (-1: a warm target), its unmoved score, and either how many other items
    score at least as high (warm targets; the target included) or, for held-out targets, the
    other items' scores themselves [P_held, N]. Built once, it ranks a (weight, offset) in
    milliseconds instead of a pass over the catalogue."""
    held_base: torch.Tensor
    held_sim: torch.Tensor
    target_col: torch.Tensor
    target_base: torch.Tensor
    others_at_least: torch.Tensor
    others_of_held_targets: torch.Tensor

    def ndcg(self, weight: float, offset: float) -> torch.Tensor:
        """Per position NDCG@10 with the held-out items' match weight and offset (the same float
        operations as the model's, so the same ranks as scoring the catalogue)."""
        weight_t, offset_t = (torch.tensor(v, dtype=self.held_base.dtype, device=self.held_base.device)
                              for v in (weight, offset))     # float32, as the model's parameter holds them
        moved = self.held_base + (weight_t * self.held_sim + offset_t)
        is_held = self.target_col >= 0
        rows = torch.arange(len(moved), device=moved.device)
        target = torch.where(is_held, moved[rows, self.target_col.clamp(min=0)], self.target_base)
        ranks = (moved >= target.unsqueeze(1)).sum(1) - 1
        ranks[~is_held] += self.others_at_least[~is_held]
        ranks[is_held] += (self.others_of_held_targets >= target[is_held].unsqueeze(1)).sum(1)
        return torch.from_numpy(case_metrics(ranks.cpu().numpy(), [10])["ndcg@10"])


@torch.no_grad()
def held_out_scores(adapted: InterestModel, items: torch.Tensor, held: torch.Tensor, positions: Positions,
                    batch_size: int) -> HeldOutScores:
    adapted.eval()
    others = torch.ones(len(adapted.known), dtype=torch.bool, device=items.device)
    others[0] = False                                   # padding: no catalogue item
    others[held] = False
    col_of = torch.full((len(adapted.known),), -1, dtype=torch.long, device=items.device)
    col_of[held] = torch.arange(len(held), device=items.device)
    parts: dict[str, list[torch.Tensor]] = {k: [] for k in ("base", "sim", "col", "target", "at_least", "held_rows")}
    with _trying(adapted.text_only_match, [0.0, 0.0]):
        for idx in torch.arange(len(positions), device=items.device).split(batch_size):
            logits, t = _logits(adapted, items, held, positions, idx)
            _, rows, upto, _ = positions.take(idx)
            sim = adapted.text_profile(positions.seqs[rows], upto) @ adapted.text.T
            target = logits[torch.arange(len(t), device=t.device), t]
            at_least = (logits[:, others] >= target.unsqueeze(1)).sum(1)
            col = col_of[t]
            parts["base"].append(logits[:, held])
            parts["sim"].append(sim[:, held])
            parts["col"].append(col)
            parts["target"].append(target)
            parts["at_least"].append(at_least)
            parts["held_rows"].append(logits[col >= 0][:, others])
    cat = {k: torch.cat(v) for k, v in parts.items()}
    return HeldOutScores(cat["base"], cat["sim"], cat["col"], cat["target"], cat["at_least"], cat["held_rows"])


@torch.no_grad()
def calibrate_exposure(adapted: InterestModel, items: torch.Tensor, held: torch.Tensor, select_on: Positions,
                       cfg: ColdStartParams, warm_reference: float) -> dict[str, float]:
    """The text-only items' match weight and offset: for each weight (the fitted one times each of
    cfg.exposure_scales) the largest offset whose warm-target NDCG@10 stays within
    cfg.max_warm_drop of warm_reference (bisection: warm NDCG only falls as the offset rises),
    then the weight whose held-out items rank best. The fitted objective weighs every position
    alike; this states the shop's trade-off instead: new products get as much exposure as the
    allowed warm-item cost buys. The model is left as it was: the caller applies the choice."""
    floor = (1 - cfg.max_warm_drop) * warm_reference
    fitted_weight = float(adapted.text_only_match[0].clamp(min=1e-3))
    table = held_out_scores(adapted, items, held, select_on, cfg.batch_size)
    held_targets = (table.target_col >= 0).cpu()

    def measure(weight: float, offset: float) -> tuple[float, float]:
        ndcg = table.ndcg(weight, offset)
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
    return best


@torch.no_grad()
def case_ndcg_by_text_weight(adapted: InterestModel, items: torch.Tensor, text_only: torch.Tensor,
                             positions: Positions, batch_size: int, weights: list[float]) -> dict[float, torch.Tensor]:
    """case_ndcg for each text match weight, in one pass: the weight only adds weight x similarity,
    so each batch's other logits and its similarities are computed once, not once per weight."""
    adapted.eval()
    ranks: dict[float, list[np.ndarray]] = {w: [] for w in weights}
    with _trying(adapted.text_match, 0.0):
        for idx in torch.arange(len(positions), device=items.device).split(batch_size):
            logits, t = _logits(adapted, items, text_only, positions, idx)
            _, rows, upto, _ = positions.take(idx)
            similarity = adapted.text_profile(positions.seqs[rows], upto) @ adapted.text.T
            for w in weights:
                ranks[w].append(target_ranks((logits + w * similarity).cpu().numpy(), t.cpu().numpy()))
    return {w: torch.from_numpy(case_metrics(np.concatenate(r), [10])["ndcg@10"]) for w, r in ranks.items()}


@torch.no_grad()
def choose_text_weight(adapted: InterestModel, items: torch.Tensor, held: torch.Tensor, select_on: Positions,
                       cfg: ColdStartParams) -> dict[str, float]:
    """The weight of the text match every item gets: the one of cfg.text_weights with the best
    warm-target NDCG@10 on select_on. Chosen there, not fitted on training positions: the frozen
    model already fits those targets, so in-sample states would undervalue the text. The model is
    left as it was: the caller applies the choice."""
    held_targets = torch.isin(select_on.targets, held)
    by_weight = case_ndcg_by_text_weight(adapted, items, held, select_on, cfg.batch_size, list(cfg.text_weights))
    tried = {weight: float(ndcg[~held_targets].mean()) for weight, ndcg in by_weight.items()}
    for weight, ndcg in tried.items():
        log.info("text match weight %g: warm NDCG@10 %.4f", weight, ndcg)
    best = max(tried, key=tried.get)
    return {"weight": best, "warm_ndcg@10": tried[best]}


def cold_state(model: InterestModel) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items() if k.startswith(COLD_START_PARTS)}


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
    with seeded(cfg.seed, deterministic=None, device=model.known.device):
        return _fit_cold_adapter(model, fit_on, select_on, cfg)


def _fit_cold_adapter(model: InterestModel, fit_on: Positions, select_on: Positions,
                      cfg: ColdStartParams) -> tuple[InterestModel, dict]:
    adapted = InterestModel(InterestModelConfig(**{**model.cfg.to_dict(), "adapter_hidden": cfg.adapter_hidden,
                                                   "text_profile_decay": cfg.profile_decay}),
                            model.text, model.known).to(model.known.device)
    missing = adapted.load_state_dict(model.state_dict(), strict=False).missing_keys
    if not all(k.startswith(COLD_START_PARTS) for k in missing):
        raise ValueError(f"the trained model lacks {missing}: is it an interest model checkpoint?")
    torch.nn.init.zeros_(adapted.cold_adapter[-1].weight)
    torch.nn.init.zeros_(adapted.cold_adapter[-1].bias)
    for name, p in adapted.named_parameters():
        p.requires_grad_(name.startswith(("cold_adapter", "text_only_match")))
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
    with torch.no_grad():
        adapted.text_match.fill_(text_match["weight"])

    def selection() -> dict[str, float]:
        ndcg = case_ndcg(adapted, items, held, select_on, cfg.batch_size)
        return {"ndcg@10": float(ndcg.mean()), "ndcg@10_text_only_targets": float(ndcg[held_targets].mean())}

    optim = torch.optim.AdamW([{"params": adapted.cold_adapter.parameters(), "lr": cfg.lr},
                               {"params": [adapted.text_only_match], "lr": cfg.match_lr}])
    start = selection()
    best, best_epoch, best_state = start["ndcg@10"], 0, cold_state(adapted)
    history, by_id = [], shown_by_id_logits(adapted, items, fit_on, cfg.batch_size)
    for epoch in tqdm(range(1, cfg.epochs + 1), desc="cold-start adapter", unit="epoch", mininterval=5):
        adapted.train()
        losses = []
        for idx in torch.randperm(len(fit_on), generator=gen).split(cfg.batch_size):
            text_only = pool[torch.randperm(len(pool), generator=gen)[:n_text_only]].to(items.device)
            loss = adapter_loss(adapted, items, text_only, fit_on, by_id, idx.to(items.device))
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
    with torch.no_grad():
        adapted.text_only_match.copy_(torch.tensor([exposure["weight"], exposure["offset"]]))
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
               "warm_ndcg@10_text_path": round(reference, 6),
               "text_match": {k: round(v, 6) for k, v in text_match.items()},
               "exposure": {k: round(v, 6) for k, v in exposure.items()}}
    log.info("cold-start adapter: NDCG@10 with held-out items text-only %.4f -> %.4f (on their own cases %.4f -> %.4f); "
             "after exposure calibration: warm %.4f (text path %.4f), held-out items %.4f",
             start["ndcg@10"], after["select_ndcg@10"], start["ndcg@10_text_only_targets"],
             after["select_ndcg@10_text_only_targets"], exposure["warm_ndcg@10"], reference, exposure["text_only_ndcg@10"])
    return adapted.eval(), {"summary": summary, "history": history}


def adapter_positions(model: InterestModel, params: Params) -> tuple[Positions, Positions]:
    """What the adapter is fitted on (every training position, read as the model was trained to
    read it: with train.every_prefix, each prefix's last) and selected on (the valid cases, each
    shopper's state after their history, as the test will see it)."""
    split = load_split(params)
    batch = params.train.eval_batch_size
    fit_on = frozen_positions(model, *training_tensors(split.train, model.cfg.max_len, params.train.every_prefix),
                              batch)
    valid = split.cases[split.cases["split"] == "valid"]
    seqs = left_pad(list(valid["history"]), model.cfg.max_len)
    targets = torch.zeros_like(seqs)
    targets[:, -1] = torch.tensor(valid["target"].to_numpy())
    return fit_on, frozen_positions(model, seqs, targets, batch)


def with_adapter(final: InterestModel, adapted: InterestModel) -> InterestModel:
    """The final model (train.final_epochs) with the cold-start parts fitted to the selected one:
    the adapter estimates an ID part from text; keep_exposure then resets what its offset buys."""
    model = InterestModel(adapted.cfg, final.text, final.known).to(final.known.device)
    model.load_state_dict({**final.state_dict(), **cold_state(adapted)})
    return model.eval()


@torch.no_grad()
def best_scores(model: InterestModel, histories: list, k: int, batch_size: int) -> tuple[np.ndarray, np.ndarray]:
    """Per history, the k best scores of the items the model knows and of those it shows by text
    alone (text_only_items), as served: [N, k] each."""
    scorer, text_only = ModelScorer(model, batch_size=batch_size), model.text_only_items().cpu().numpy()
    known = np.setdiff1d(np.arange(1, model.cfg.n_items + 1), text_only)
    warm, new = [], []
    for chunk in batch_slices(len(histories), batch_size):
        scores = scorer.score(histories[chunk])
        warm.append(-np.sort(-scores[:, known], axis=1)[:, :k])
        new.append(-np.sort(-scores[:, text_only], axis=1)[:, :k])
    return np.concatenate(warm), np.concatenate(new)


def new_share(warm: np.ndarray, new: np.ndarray, shift: float) -> float:
    """The share of the top-k places the text-only items take when their scores move by shift."""
    k = warm.shape[1]
    merged = np.concatenate([warm, new + np.float32(shift)], axis=1)
    return float((np.argsort(-merged, axis=1, kind="stable")[:, :k] >= k).mean())


@torch.no_grad()
def keep_exposure(final: InterestModel, adapted: InterestModel, histories: list, cfg: ColdStartParams,
                  batch_size: int, k: int = 10) -> dict[str, float]:
    """Moves the final model's text-only offset (within cfg.offset_range, by bisection) so that
    new products take the share of the valid cases' top-k places they take in the adapted model,
    where their exposure was calibrated. The final epochs move the trained items' scores, and with
    them what a fixed offset buys: on Beauty's project split, after one final epoch, the same
    offset cost the final model 5.6% of its warm-item NDCG@10 instead of 1.8%. The share needs no targets, so the valid cases
    the final model trained on can measure it."""
    if len(final.text_only_items()) == 0:
        return {}
    reference = new_share(*best_scores(adapted, histories, k, batch_size), 0.0)
    warm, new = best_scores(final, histories, k, batch_size)
    base = float(final.text_only_match[1])
    low, high = cfg.offset_range[0] - base, cfg.offset_range[1] - base
    for _ in range(cfg.final_bisection_steps):
        mid = (low + high) / 2
        low, high = (low, mid) if new_share(warm, new, mid) >= reference else (mid, high)
    final.text_only_match[1] += high
    result = {"offset": base + high, "share": new_share(warm, new, high), "reference_share": reference}
    log.info("final model: text-only offset %.2f -> %.2f, new products take %.2f%% of the valid top-%d places "
             "(%.2f%% in the adapted model)", base, base + high, 100 * result["share"], k, 100 * reference)
    return result


def run(params: Params) -> dict:
    """Pipeline step `finetune_cold`: fit the adapter to the selected checkpoint; save the adapted
    model (tuning on valid) and the final model with the same adapter and the same exposure of
    new products (tested and served)."""
    device = select_device(params.coldstart.device)
    model, payload = load_checkpoint(model_path(params), device)
    adapted, result = fit_cold_adapter(model, *adapter_positions(model, params), params.coldstart)
    items = pd.DataFrame({"item": payload["items"], "item_idx": np.arange(1, len(payload["items"]) + 1)})
    meta = {**payload["meta"], "cold_adapter": result["summary"]}
    save_checkpoint(cold_model_path(params), adapted, items, meta)
    final, final_payload = load_checkpoint(final_model_path(params), device)
    final = with_adapter(final, adapted)
    valid = load_split(params).cases.query("split == 'valid'")
    result["summary"]["final_exposure"] = keep_exposure(final, adapted, list(valid["history"]), params.coldstart,
                                                        params.train.eval_batch_size)
    save_checkpoint(final_cold_model_path(params), final, items,
                    {**final_payload["meta"], **meta, "cold_adapter": result["summary"]})
    write_json(result["summary"], params.path(params.coldstart.adapter_metrics_file))
    return result["summary"]
