"""Item text -> frozen text embeddings aligned with the split's item index.

Row i of the matrix is item_idx i (row 0, the padding item, stays zero), so the model, the
baselines and the cold-start path all index it the same way.
"""
from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from components.core.config.schema import EmbedParams, Params
from components.core.device import select_device
from components.core.io import read_json, read_parquet, write_json, write_npy
from components.data.split import load_split
from components.data.validate import validated_paths
from components.features.text_encoder import load_text_encoder

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TextEncoderSettings:
    """How item and query texts become embeddings: what a served model must encode new texts with."""

    encoder: str
    fields: tuple[str, ...]
    max_chars: int
    max_tokens: int
    batch_size: int


def item_texts(items: pd.DataFrame, fields: list[str], max_chars: int) -> list[str]:
    """One text per item: the configured fields that are present, joined and trimmed."""
    present = [f for f in fields if f in items.columns]
    texts = []
    for row in items[present].itertuples(index=False):
        parts = [str(v).strip() for v in row if isinstance(v, str) and v.strip()]
        texts.append(" | ".join(parts)[:max_chars])
    return texts


def embedding_paths(params: Params) -> dict[str, Path]:
    out = params.path(params.embed.out_dir)
    return {"matrix": out / "items.npy", "meta": out / "meta.json"}


def load_item_embeddings(params: Params) -> np.ndarray:
    return np.load(embedding_paths(params)["matrix"])


def embed_catalogue(item_index: pd.DataFrame, items: pd.DataFrame, cfg: EmbedParams) -> tuple[np.ndarray, list[str]]:
    """[n_items + 1, dim] unit vectors for every catalogue item, ordered by item_idx."""
    catalogue = item_index.merge(items, on="item", how="left").sort_values("item_idx")
    texts = item_texts(catalogue, list(cfg.fields), cfg.max_chars)
    missing = sum(1 for t in texts if not t)
    if missing:
        log.warning("%d of %d items have no text; they get the encoder's empty-text vector", missing, len(texts))
    encoder = load_text_encoder(cfg.encoder, select_device(cfg.device), cfg.max_tokens)
    vectors = encoder.encode(texts, cfg.batch_size, progress=True)
    matrix = np.zeros((len(texts) + 1, vectors.shape[1]), dtype=np.float32)
    matrix[catalogue["item_idx"].to_numpy()] = vectors
    return matrix, texts


def run(params: Params) -> dict:
    """Pipeline step `embed`: every catalogue item's text embedding, row = item_idx."""
    split = load_split(params)
    matrix, texts = embed_catalogue(split.item_index, read_parquet(validated_paths(params)["items"]), params.embed)
    paths = embedding_paths(params)
    write_npy(matrix, paths["matrix"])
    meta = {
        "encoder": params.embed.encoder, "dim": int(matrix.shape[1]), "items": len(texts),
        "texts_sha256": hashlib.sha256("\n".join(texts).encode("utf-8")).hexdigest(),
        "empty_texts": sum(1 for t in texts if not t),
    }
    write_json(meta, paths["meta"])
    log.info("embedded %d items with %s (dim %d)", len(texts), params.embed.encoder, meta["dim"])
    return meta


def embedding_meta(params: Params) -> dict:
    return read_json(embedding_paths(params)["meta"])
