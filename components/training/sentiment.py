"""`interest sentiment`: fine-tune the review sentiment classifier and test it.

Reviews are split by shopper (no shopper in two parts, so the test measures texts of people the
classifier never read); the loss is class-weighted (five-star reviews are two thirds of the data);
the epoch with the best valid macro-F1 is kept. The test figures sit next to a majority-class and
a TF-IDF + logistic-regression baseline fitted on the same training reviews.
"""
from __future__ import annotations

import copy
import logging
import time

import numpy as np
import pandas as pd
import torch
from sklearn.model_selection import GroupShuffleSplit
from tqdm.auto import tqdm

from components.core.config.schema import Params, SentimentParams
from components.core.device import select_device
from components.core.errors import DataSourceError
from components.core.io import write_json
from components.data.review_texts import read_review_texts
from components.evaluation.sentiment import bootstrap_macro_f1, figures, majority_baseline, tfidf_baseline
from components.models.sentiment import (LABELS, FrozenBatch, SentimentClassifier, build_classifier, head_targets,
                                         save_classifier, star_labels)
from components.training.seeding import seeded

log = logging.getLogger(__name__)

MODEL = "fine_tuned_encoder"


def split_by_shopper(reviews: pd.DataFrame, cfg: SentimentParams) -> dict[str, pd.DataFrame]:
    """train / valid / test with every shopper's reviews in exactly one part."""
    def cut(frame: pd.DataFrame, fraction: float, seed: int) -> tuple[pd.DataFrame, pd.DataFrame]:
        rest, held = next(GroupShuffleSplit(n_splits=1, test_size=fraction, random_state=seed)
                          .split(frame, groups=frame["user"]))
        return frame.iloc[rest], frame.iloc[held]
    rest, test = cut(reviews, cfg.test_fraction, cfg.seed)
    train, valid = cut(rest, cfg.valid_fraction / (1 - cfg.test_fraction), cfg.seed + 1)
    parts = {"train": train, "valid": valid, "test": test}
    for name, part in parts.items():
        missing = set(range(len(LABELS))) - set(star_labels(part["rating"], cfg))
        if missing:
            raise DataSourceError(f"the {name} shoppers' reviews have no {[LABELS[m] for m in sorted(missing)]} "
                                  f"reviews: too few reviews (reviews.sample_users) to train and test a classifier")
    return {name: part.reset_index(drop=True) for name, part in parts.items()}


def class_weights(labels: np.ndarray, n_classes: int) -> torch.Tensor:
    """Inverse class frequency, mean 1 over the reviews."""
    counts = np.bincount(labels, minlength=n_classes).astype(float)
    weights = len(labels) / (n_classes * np.maximum(counts, 1))
    return torch.tensor(weights, dtype=torch.float32)


def length_batches(texts: list[str], batch_size: int) -> list[np.ndarray]:
    """Batches of similar length: little padding."""
    order = np.argsort([len(t) for t in texts], kind="stable")
    return [order[i:i + batch_size] for i in range(0, len(order), batch_size)]


def frozen_batches(model: SentimentClassifier, texts: list[str], batches: list[np.ndarray], desc: str) -> list[FrozenBatch]:
    return [model.frozen([texts[i] for i in idx]) for idx in tqdm(batches, desc=desc, unit="batch", mininterval=5)]


@torch.no_grad()
def frozen_macro_f1(model: SentimentClassifier, frozen: list[FrozenBatch], batches: list[np.ndarray],
                    labels: np.ndarray) -> float:
    """Macro-F1 from the frozen layers' output: the valid reviews pass the frozen layers once, not
    once per epoch."""
    model.eval()
    predicted = np.empty(len(labels), dtype=np.int64)
    for batch, idx in zip(frozen, batches):
        predicted[idx] = model.label_proba(model.forward_top(batch)).argmax(1).cpu().numpy()
    model.train()
    return figures(labels, predicted, LABELS)["macro_f1"]


def mixed_precision(cfg: SentimentParams, device: torch.device) -> torch.autocast:
    """bfloat16 autocast when reviews.sentiment.bf16 is on (the weights and optimiser stay float32)."""
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=cfg.bf16)


def fine_tune(train: pd.DataFrame, valid: pd.DataFrame, cfg: SentimentParams,
              device: torch.device) -> tuple[SentimentClassifier, list[dict]]:
    """The classifier at its best valid epoch, and each epoch's loss, valid macro-F1 and seconds."""
    texts, labels = train["text"].tolist(), star_labels(train["rating"], cfg)
    targets, labels_of_outputs = head_targets(train["rating"], cfg)
    valid_texts, valid_labels = valid["text"].tolist(), star_labels(valid["rating"], cfg)
    with seeded(cfg.seed, deterministic=None, device=device):
        model = build_classifier(cfg, cfg.encoder, device, labels_of_outputs)
        trainable = model.freeze_below(cfg.trainable_layers)
        log.info("fine-tuning %d parameters (top %d encoder layers and a head of %d outputs) on %d reviews",
                 trainable, cfg.trainable_layers, len(labels_of_outputs), len(texts))
        body = [p for p in model.body.parameters() if p.requires_grad]
        optimiser = torch.optim.AdamW([{"params": body, "lr": cfg.lr},
                                       {"params": model.head.parameters(), "lr": cfg.head_lr}])
        steps = cfg.epochs * -(-len(texts) // cfg.batch_size)
        schedule = torch.optim.lr_scheduler.LambdaLR(optimiser, lambda step: 1 - step / steps)
        # every output weighs as its label: the labels stay balanced whatever the head predicts
        weights = class_weights(labels, len(LABELS))[labels_of_outputs]
        loss_fn = torch.nn.CrossEntropyLoss(weight=weights.to(device))
        rng = np.random.default_rng(cfg.seed)
        batches = length_batches(texts, cfg.batch_size)
        valid_batches = length_batches(valid_texts, cfg.eval_batch_size)
        with mixed_precision(cfg, device):
            frozen = frozen_batches(model, texts, batches, "frozen layers")
            valid_frozen = frozen_batches(model, valid_texts, valid_batches, "frozen layers (valid)")
        history, best, best_state = [], -1.0, None
        for epoch in range(1, cfg.epochs + 1):
            start, total = time.perf_counter(), 0.0
            model.train()
            for b in tqdm(rng.permutation(len(batches)), desc=f"sentiment epoch {epoch}", unit="batch",
                          mininterval=5):
                idx = batches[b]
                with mixed_precision(cfg, device):   # a step's forward alone: autocast caches its weight casts
                    loss = loss_fn(model.forward_top(frozen[b]), torch.as_tensor(targets[idx], device=device))
                optimiser.zero_grad()
                loss.backward()
                optimiser.step()
                schedule.step()
                total += loss.item() * len(idx)
            with mixed_precision(cfg, device):
                f1 = frozen_macro_f1(model, valid_frozen, valid_batches, valid_labels)
            history.append({"epoch": epoch, "loss": round(total / len(texts), 6), "valid_macro_f1": f1,
                            "seconds": round(time.perf_counter() - start, 1)})
            log.info("sentiment epoch %d: loss %.4f, valid macro-F1 %.4f", epoch, total / len(texts), f1)
            if f1 > best:
                best, best_state = f1, copy.deepcopy(model.state_dict())
        model.load_state_dict(best_state)
    return model.eval(), history


def evaluate_against_baselines(model: SentimentClassifier, parts: dict[str, pd.DataFrame],
                               cfg: SentimentParams) -> dict:
    """Test figures of the classifier and both baselines, and whether it beats each by more than
    the bootstrap interval of the difference (its lower end above zero)."""
    train, test = parts["train"], parts["test"]
    train_labels, labels = star_labels(train["rating"], cfg), star_labels(test["rating"], cfg)
    predictions = {
        MODEL: model.predict_proba(test["text"].tolist(), cfg.eval_batch_size, progress=True).argmax(1),
        "majority_class": majority_baseline(train_labels, len(test)),
        "tfidf_logreg": tfidf_baseline(train["text"].tolist(), train_labels, test["text"].tolist(), cfg),
    }
    boot = bootstrap_macro_f1(labels, predictions, MODEL, len(LABELS), cfg)
    return {
        "models": {name: {**figures(labels, predicted, LABELS), "macro_f1_interval": boot["intervals"][name]}
                   for name, predicted in predictions.items()},
        "difference_intervals": boot["differences"],
        "beats_baselines": all(low > 0 for low, _ in boot["differences"].values()),
    }


def run(params: Params) -> dict:
    cfg = params.reviews.sentiment
    reviews = read_review_texts(params)
    parts = split_by_shopper(reviews, cfg)
    device = select_device(cfg.device)
    start = time.perf_counter()
    model, history = fine_tune(parts["train"], parts["valid"], cfg, device)
    seconds = time.perf_counter() - start
    result = evaluate_against_baselines(model, parts, cfg)
    settings = cfg.settings()
    save_classifier(model, params.path(cfg.model_file), settings)
    metrics = {
        "dataset": params.reviews.dataset,
        "labels": {"negative": f"stars <= {cfg.negative_max:g}", "neutral": f"stars <= {cfg.neutral_max:g}",
                   "positive": f"stars > {cfg.neutral_max:g}"},
        "split": {name: {"reviews": len(part), "shoppers": int(part["user"].nunique()),
                         "labels": dict(zip(LABELS, np.bincount(star_labels(part["rating"], cfg),
                                                                minlength=len(LABELS)).tolist()))}
                  for name, part in parts.items()},
        "test": result,
        "fine_tuning": {"history": history, "seconds": round(seconds, 1), "device": device.type,
                        "trainable_layers": cfg.trainable_layers, "encoder": cfg.encoder, "target": cfg.target},
    }
    write_json(metrics, params.path(cfg.metrics_file))
    return {"macro_f1": {name: m["macro_f1"] for name, m in result["models"].items()},
            "difference_intervals": result["difference_intervals"], "beats_baselines": result["beats_baselines"],
            "metrics_file": str(cfg.metrics_file)}
