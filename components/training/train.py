"""Training of the interest model: full-softmax cross-entropy, AdamW, early stopping on
validation NDCG@10, best checkpoint kept. Runs on one device, or data-parallel under `torchrun`
(DistributedDataParallel; gloo on CPU, NCCL on CUDA) with the same code path.
"""
from __future__ import annotations

import copy
import hashlib
import logging
import math
import time
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import pandas as pd
import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn
from tqdm.auto import tqdm

from components.core.batch_slices import batch_slices
from components.core.config.schema import Params, TrainParams
from components.core.io import write_json
from components.data.split import known_before, load_split
from components.evaluation.metrics import masked_target_ranks, ranking_summary, target_ranks
from components.features.embeddings import embedding_meta, load_item_embeddings
from components.models.checkpoint import final_model_path, model_path, save_checkpoint
from components.models.interest_model import InterestModel, InterestModelConfig
from components.models.interest_scorer import ModelScorer
from components.training.distributed import DistContext, init_distributed
from components.training.launch import train_on_agents, under_torchrun
from components.training.seeding import seeded
from components.training.warm_start import WarmStart, training_rows, warm_start

log = logging.getLogger(__name__)


@dataclass
class FitResult:
    model: InterestModel
    history: list[dict] = field(default_factory=list)
    best_epoch: int = 0
    best_valid: float = float("-inf")
    seconds: float = 0.0
    stopped_because: str = ""
    param_digests: list[str] = field(default_factory=list)
    start_valid: float | None = None    # a warm start's weights' validation NDCG@10, before any training

    def selected_lr(self, tp: TrainParams) -> float:
        """The learning rate the selected weights were trained at (the final pass goes on at it):
        train.lr for a warm start's own weights (epoch 0)."""
        return self.history[self.best_epoch - 1]["lr"] if self.best_epoch else tp.lr


def training_tensors(train: pd.DataFrame, max_len: int, every_prefix: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """Next-item pairs, left-padded: inputs, targets [rows, max_len]. One row per shopper with a
    target at every position; or, with every_prefix, one row per prefix with its target at the
    last position only: every target is then predicted from the last position, as at serving
    time (right-aligned, the newest item at max_len - 1), not from wherever it sits in the
    shopper's sequence."""
    seqs = train.sort_values(["user", "position"]).groupby("user", sort=True)["item_idx"].agg(list)
    seqs = [np.asarray(s) for s in seqs if len(s) >= 2]
    if every_prefix:
        rows = sum(len(s) - 1 for s in seqs)
        inputs, targets = np.zeros((rows, max_len), dtype=np.int64), np.zeros((rows, max_len), dtype=np.int64)
        row = 0
        for seq in seqs:
            for end in range(1, len(seq)):
                prefix = seq[max(0, end - max_len):end]
                inputs[row, max_len - len(prefix):] = prefix
                targets[row, -1] = seq[end]
                row += 1
        return torch.from_numpy(inputs), torch.from_numpy(targets)
    inputs = torch.zeros((len(seqs), max_len), dtype=torch.long)
    targets = torch.zeros_like(inputs)
    for row, seq in enumerate(seqs):
        seq = seq[-(max_len + 1):]
        n = len(seq) - 1
        inputs[row, max_len - n:] = torch.as_tensor(seq[:-1])
        targets[row, max_len - n:] = torch.as_tensor(seq[1:])
    return inputs, targets


def newest_rows(train: pd.DataFrame, every_prefix: bool) -> torch.Tensor:
    """The rows of training_tensors(train, ..., every_prefix) whose target is the shopper's newest
    item: with every_prefix each shopper's last row; without, every row."""
    sizes = train.groupby("user", sort=True).size().to_numpy()
    sizes = sizes[sizes >= 2]
    return torch.from_numpy(np.cumsum(sizes - 1) - 1) if every_prefix else torch.arange(len(sizes))


def trim_padding(inputs: torch.Tensor, targets: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """A left-padded batch without its all-padding columns: it is as wide as its longest sequence."""
    width = max(1, int((inputs != 0).sum(1).max()))
    return inputs[:, -width:], targets[:, -width:]


def bucketed_batches(perm: torch.Tensor, lengths: torch.Tensor, batch_size: int,
                     bucket_batches: int, gen: torch.Generator) -> list[torch.Tensor]:
    """Batches of similar sequence length, in random order: most histories are short, so this
    cuts the padding the transformer works through several-fold without biasing the order."""
    batches = []
    for chunk in perm.split(batch_size * bucket_batches):
        chunk = chunk[torch.argsort(lengths[chunk], stable=True)]
        batches.extend(chunk.split(batch_size))
    return [batches[i] for i in torch.randperm(len(batches), generator=gen)]


def param_digest(model: torch.nn.Module) -> str:
    h = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        h.update(name.encode())
        h.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()[:16]


def _optimizer(model: torch.nn.Module, lr: float, tp: TrainParams, device: torch.device) -> torch.optim.Optimizer:
    # the fused kernel updates all parameters in one pass: on CPU the per-step update of the
    # catalogue-sized embedding otherwise costs as much as the forward pass
    return torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=tp.weight_decay,
                             fused=device.type in ("cpu", "cuda"))


def _autocast(device: torch.device):
    """Mixed precision on CUDA (bf16 where supported, else fp16); full precision elsewhere."""
    if device.type != "cuda":
        return torch.autocast("cpu", enabled=False), None
    dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    scaler = torch.amp.GradScaler("cuda", enabled=dtype == torch.float16)
    return torch.autocast("cuda", dtype=dtype), scaler


def _weight_average(model: torch.nn.Module, tp: TrainParams, steps_per_epoch: int) -> AveragedModel | None:
    """An exponential moving average of the weights (train.weight_average), or None when off. Its
    memory, 1 / (1 - decay) steps, is capped at train.weight_average_max_epochs: on a small data
    set an epoch is a few steps, and a fixed decay would keep the average near the initial weights."""
    if not tp.weight_average:
        return None
    decay = min(tp.weight_average, 1.0 - 1.0 / (tp.weight_average_max_epochs * steps_per_epoch))
    return AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(decay))


def rank_batch_size(tp: TrainParams, world_size: int) -> int:
    """Rows per step on each process. train.batch_size is a step's rows over all processes, so N
    data-parallel processes take the steps one process takes (DDP averages their gradients): with
    the batch per process instead, two processes took half the steps an epoch and stopped at a
    valid NDCG@10 1.8 standard deviations of the seeds below one process's."""
    return max(1, tp.batch_size // world_size)


def _steps_per_epoch(rows: int, tp: TrainParams, world_size: int = 1) -> int:
    return max(1, math.ceil(rows / world_size / rank_batch_size(tp, world_size)))


def _evaluated(model: InterestModel, average: AveragedModel | None) -> InterestModel:
    """The weights that are validated, kept and served: the average when there is one."""
    return model if average is None else average.module.eval()


def train_epoch(net: torch.nn.Module, optim: torch.optim.Optimizer, batches: list[torch.Tensor], inputs: torch.Tensor,
                targets: torch.Tensor, tp: TrainParams, device: torch.device, amp: tuple, desc: str,
                show: bool = True, average: AveragedModel | None = None) -> list[float]:
    """One pass over the batches (row indices of inputs/targets); the loss of each step.
    amp: _autocast(device), kept across epochs (the gradient scaler's state); average: updated
    after every step."""
    autocast, scaler = amp
    losses = []
    for idx in tqdm(batches, desc=desc, unit="batch", leave=False, disable=not show, mininterval=5):
        x, y = (t.to(device) for t in trim_padding(inputs[idx], targets[idx]))
        with autocast:
            loss = net(x, y, tp.n_negatives)
        optim.zero_grad(set_to_none=True)
        if scaler is not None and scaler.is_enabled():
            scaler.scale(loss).backward()
            scaler.step(optim)
            scaler.update()
        else:
            loss.backward()
            if tp.grad_clip:
                torch.nn.utils.clip_grad_norm_(net.parameters(), tp.grad_clip)
            optim.step()
        if average is not None:
            average.update_parameters(net.module if isinstance(net, DistributedDataParallel) else net)
        losses.append(loss.item())
    return losses


def fit(cfg: InterestModelConfig, tp: TrainParams, inputs: torch.Tensor, targets: torch.Tensor,
        text: torch.Tensor | None, known: torch.Tensor, validate: Callable[[InterestModel], dict],
        ctx: DistContext = DistContext(), device: torch.device = torch.device("cpu"),
        initial: dict[str, torch.Tensor] | None = None) -> FitResult:
    """Train and keep the weights (the average, with train.weight_average) of the epoch with the
    best validation NDCG@10.

    validate(model) -> metrics dict with "ndcg@10"; called on the main process only.
    initial: the weights to begin from instead of a fresh initialisation (a warm start); they
    compete as epoch 0.
    """
    with seeded(tp.seed, tp.deterministic, device):
        return _fit(cfg, tp, inputs, targets, text, known, validate, ctx, device, initial)


def _fit(cfg: InterestModelConfig, tp: TrainParams, inputs: torch.Tensor, targets: torch.Tensor,
         text: torch.Tensor | None, known: torch.Tensor, validate: Callable[[InterestModel], dict],
         ctx: DistContext, device: torch.device, initial: dict[str, torch.Tensor] | None) -> FitResult:
    model = InterestModel(cfg, text, known).to(device)
    if initial is not None:
        model.load_state_dict(initial)
    # buffers (text matrix, known mask) never change: no need to broadcast them every step
    net = DistributedDataParallel(model, broadcast_buffers=False) if ctx.enabled else model
    optim, amp = _optimizer(model, tp.lr, tp, device), _autocast(device)
    average = _weight_average(model, tp, _steps_per_epoch(len(inputs), tp, ctx.world_size))
    result = FitResult(model=model)
    best_state, bad_epochs, began = None, 0, time.monotonic()
    if initial is not None and ctx.is_main:    # the weights as they come: a retraining keeps them unless it beats them
        result.best_valid = result.start_valid = validate(model.eval())["ndcg@10"]
        best_state = copy.deepcopy(model.state_dict())
        log.info("warm start: valid ndcg@10 %.4f before training", result.best_valid)
    gen = torch.Generator().manual_seed(tp.seed)
    lengths = (inputs != 0).sum(1)
    for epoch in range(1, tp.epochs + 1):
        model.train()
        perm = torch.randperm(len(inputs), generator=gen)            # same order on every rank
        perm = perm[: len(perm) // ctx.world_size * ctx.world_size][ctx.rank::ctx.world_size]
        batches = bucketed_batches(perm, lengths, rank_batch_size(tp, ctx.world_size), tp.bucket_batches, gen)
        t0 = time.monotonic()
        losses = train_epoch(net, optim, batches, inputs, targets, tp, device, amp, f"epoch {epoch}", ctx.is_main,
                             average)
        record = {"epoch": epoch, "loss": float(np.mean(losses)), "epoch_seconds": time.monotonic() - t0}
        decision: list = [None, True]
        if ctx.is_main:
            model.eval()
            t1 = time.monotonic()
            record.update({f"valid_{k}": v for k, v in validate(_evaluated(model, average)).items()})
            record.update(valid_seconds=time.monotonic() - t1, elapsed_seconds=time.monotonic() - began)
            score = record["valid_ndcg@10"]
            improved = score > result.best_valid
            if improved:
                result.best_valid, result.best_epoch, bad_epochs = score, epoch, 0
                best_state = copy.deepcopy(_evaluated(model, average).state_dict())
            else:
                bad_epochs += 1
            elapsed = (time.monotonic() - began) / 60
            stop = ("patience" if bad_epochs >= tp.patience
                    else "time budget" if tp.max_minutes and elapsed >= tp.max_minutes else "")
            decision = [stop, improved]
            record["lr"] = optim.param_groups[0]["lr"]
            result.history.append(record)
            log.info("epoch %d  loss %.4f  valid ndcg@10 %.4f  recall@10 %.4f  lr %.2g  (%.0fs)", epoch, record["loss"],
                     score, record.get("valid_recall@10", math.nan), record["lr"], record["epoch_seconds"])
        if ctx.enabled:
            dist.broadcast_object_list(decision, src=0)
        if decision[0]:
            result.stopped_because = decision[0]
            break
        if not decision[1]:           # a plateau: smaller steps find the better weights near it
            for group in optim.param_groups:
                group["lr"] *= tp.plateau_decay
    else:
        result.stopped_because = "max epochs"
    if ctx.enabled:
        holder = [best_state]
        dist.broadcast_object_list(holder, src=0)
        best_state = holder[0]
    if best_state is not None:
        model.load_state_dict(best_state)
    result.seconds = time.monotonic() - began
    result.param_digests = ctx.gather(param_digest(model))
    return result


def final_pass(model: InterestModel, tp: TrainParams, seen: pd.DataFrame, lr: float,
               device: torch.device) -> InterestModel:
    """A copy of the selected model after train.final_epochs more epochs over every prefix of
    `seen` (the interactions as the test sees them: each shopper's valid item included), at the
    learning rate it was selected at, then train.final_newest_passes passes over each shopper's
    newest prefix alone at final_newest_lr_scale of that rate. The model tested and served then
    knows every shopper's latest item, as the baselines fit for test do, and leans toward the
    newest transitions, which tell most about the next one (the weight average takes in a share
    of each pass); valid cannot judge it any more, so nothing is chosen after it. The split
    shifted back by one item, NDCG@10 on the held-out item: Beauty .0617 selected, .0683 after
    five epochs, .0696 after six newest passes at 0.3 of the rate; Scientific .0834, .0866,
    .0892 (at the full rate the weights as trained overfit the few rows: Beauty .0618 after four)."""
    final = copy.deepcopy(model).to(device)
    inputs, targets = training_tensors(seen, model.cfg.max_len, tp.every_prefix)
    optim, amp, average = _optimizer(final, lr, tp, device), _autocast(device), \
        _weight_average(final, tp, _steps_per_epoch(len(inputs), tp))
    lengths = (inputs != 0).sum(1)
    every, newest = torch.arange(len(inputs)), newest_rows(seen, tp.every_prefix)
    passes = [(f"final epoch {epoch}", every, lr) for epoch in range(1, tp.final_epochs + 1)] + \
        [(f"newest prefixes {n}", newest, lr * tp.final_newest_lr_scale) for n in range(1, tp.final_newest_passes + 1)]
    with seeded(tp.seed, tp.deterministic, device):
        gen = torch.Generator().manual_seed(tp.seed)
        final.train()
        for desc, rows, rate in passes:
            for group in optim.param_groups:
                group["lr"] = rate
            batches = bucketed_batches(rows[torch.randperm(len(rows), generator=gen)], lengths, tp.batch_size,
                                       tp.bucket_batches, gen)
            train_epoch(final, optim, batches, inputs, targets, tp, device, amp, desc, average=average)
    return _evaluated(final.eval(), average)


def known_mask(item_index: pd.DataFrame) -> torch.Tensor:
    """[n_items + 1]: 1 for every catalogue item the split did not hold out as new (is_cold), 0
    for the held-out ones and padding. Which items have interactions in the training rows does
    not decide it: in 5-core data an item absent from them has all its interactions among the
    held-out targets, so treating it as new would use what the held-out data holds. Such an item
    keeps its ID embedding, learnt as a negative only, as the peers' models score it."""
    known = torch.zeros(len(item_index) + 1)
    known[torch.tensor(item_index.loc[~item_index["is_cold"].astype(bool), "item_idx"].to_numpy())] = 1.0
    return known


def model_config(params: Params, n_items: int, text_dim: int) -> InterestModelConfig:
    m = params.model
    return InterestModelConfig(n_items=n_items, max_len=m.max_len, hidden=m.hidden, n_layers=m.n_layers,
                        n_heads=m.n_heads, dropout=m.dropout, mode=m.mode, id_dropout=m.id_dropout,
                        repeat_bias=m.repeat_bias, frequency_mix=m.frequency_mix,
                        frequency_bins=m.frequency_bins,
                        text_dim=text_dim if m.mode != "id" else 0)


def validation_fn(cases: pd.DataFrame, batch_size: int, ks: tuple[int, ...] = (10,)) -> Callable[[InterestModel], dict]:
    """Early-stopping signal: full-ranking metrics on the valid cases, headline (unmasked)
    protocol; the masked protocol's beside them (`masked_` keys), for comparing training curves
    with peers that mask."""
    valid = cases[cases["split"] == "valid"]
    histories, targets = list(valid["history"]), valid["target"].to_numpy()

    def validate(model: InterestModel) -> dict:
        scorer, ranks, masked = ModelScorer(model, batch_size=batch_size), [], []
        for chunk in batch_slices(len(histories), batch_size):    # a score matrix per chunk, not all at once
            scores = scorer.score(histories[chunk])
            ranks.append(target_ranks(scores, targets[chunk]))
            masked.append(masked_target_ranks(scores, ranks[-1], histories[chunk], targets[chunk]))
        ranks, masked = np.concatenate(ranks), np.concatenate(masked)
        return {**ranking_summary(ranks, ks), **{f"masked_{k}": v for k, v in ranking_summary(masked, ks).items()}}
    return validate


def _mean_seconds(history: list[dict], key: str) -> float | None:
    """Mean of a per-epoch timing; None on the ranks that keep no history."""
    return round(float(np.mean([h[key] for h in history])), 1) if history else None


def run(params: Params) -> dict:
    """Pipeline step `train`: train on the split, keep the best checkpoint (train.model_file) and
    the model tested and served (train.final_model_file: after the final pass, if any), write
    training metrics and curves. train.processes > 1: as that many torchrun agents (launch.py)."""
    if params.train.processes > 1 and not under_torchrun():
        return train_on_agents(params)
    ctx, device = init_distributed(params.train.device)
    split = load_split(params)
    n_items = len(split.item_index)
    text = None
    if params.model.mode != "id":
        text = torch.from_numpy(load_item_embeddings(params))
    known = known_mask(split.item_index)
    cfg = model_config(params, n_items, 0 if text is None else text.shape[1])
    inputs, targets = training_tensors(split.train, cfg.max_len, params.train.every_prefix)
    if ctx.is_main:
        log.info("training %s model on %d sequences, %d items, device %s, %d process(es)",
                 cfg.mode, len(inputs), n_items, device, ctx.world_size)
    text_meta = None if text is None else {k: v for k, v in embedding_meta(params).items()
                                           if k in ("encoder", "encoder_sha256")}   # meta.json read once
    rows = training_rows(split.train, split.item_index)
    warm = (warm_start(model_path(params), InterestModel(cfg, text, known), split.item_index, text_meta, rows)
            if params.train.warm_start else WarmStart(None, "train.warm_start is off"))
    if ctx.is_main:
        log.info("warm start: %s" if warm.state is not None else "a fresh initialisation: %s", warm.reason)
    used_by_rank = ctx.gather(warm.state is not None)   # each rank decides from its own read of the file
    result = fit(cfg, params.train, inputs, targets, text, known,
                 validation_fn(split.cases, params.train.eval_batch_size), ctx, device, warm.state)
    summary = {
        "train_seconds": round(result.seconds, 1),
        "best_epoch": result.best_epoch,
        "epochs_run": len(result.history),
        "best_valid_ndcg@10": round(result.best_valid, 6),
        "stopped_because": result.stopped_because,
        "warm_start": {"used": warm.state is not None, "used_by_rank": used_by_rank, "reason": warm.reason,
                       "carried_items": warm.carried_items,
                       "valid_ndcg@10_before": result.start_valid and round(result.start_valid, 6)},
        # where the time goes: the pass over the training rows, and the full-catalogue validation
        "seconds_per_epoch": _mean_seconds(result.history, "epoch_seconds"),
        "valid_seconds_per_epoch": _mean_seconds(result.history, "valid_seconds"),
        "processes": ctx.world_size,
        "device": device.type,
        "param_digests": result.param_digests,
        "parameters": sum(p.numel() for p in result.model.parameters()),
    }
    if ctx.is_main:
        final = result.model
        if params.train.final_epochs or params.train.final_newest_passes:
            t0, seen = time.monotonic(), known_before(split, "test").train
            final = final_pass(result.model, params.train, seen, result.selected_lr(params.train), device)
            summary["final_pass_seconds"] = round(time.monotonic() - t0, 1)
            log.info("final pass with the valid items: %.0fs", summary["final_pass_seconds"])
        meta = {"config": cfg.to_dict(), "train": summary, "encoder": text_meta and text_meta["encoder"],
                "text": text_meta}
        save_checkpoint(model_path(params), result.model, split.item_index, meta, train_rows=rows)
        save_checkpoint(final_model_path(params), final, split.item_index, {**meta, "final_epochs": params.train.final_epochs,
                                                                      "final_newest_passes": params.train.final_newest_passes})
        write_json(summary, params.path(params.train.metrics_file))
        write_json(result.history, params.path(params.train.history_file))
        log.info("best epoch %d: valid NDCG@10 %.4f (%s, %.0fs)", result.best_epoch, result.best_valid,
                 result.stopped_because, result.seconds)
    if ctx.enabled:
        dist.barrier()
        dist.destroy_process_group()
    return summary
