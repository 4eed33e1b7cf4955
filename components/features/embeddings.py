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
from components.core.io import read_json, read_parquet, write_json, write_npy, write_parquet
from components.data.split import load_split
from components.data.validate import validated_paths
from components.features.text_encoder import encoder_fingerprint, load_text_encoder

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
    return {"matrix": out / "items.npy", "meta": out / "meta.json", "digests": out / "text_digests.parquet"}


def text_digests(texts: list[str]) -> list[str]:
    return [hashlib.sha256(t.encode("utf-8")).hexdigest() for t in texts]


def previous_vectors(params: Params, encoder_sha256: str) -> dict[str, np.ndarray]:
    """The last run's vector of each text it embedded (by the text's digest), when that run used
    the same encoder (its encoder_fingerprint) and input length: a retraining finds most of the
    catalogue unchanged, and encoding is the step's whole cost. A fresh folder (`dvc repro`
    empties it) encodes everything."""
    paths = embedding_paths(params)
    if not all(path.is_file() for path in paths.values()):
        return {}
    meta = read_json(paths["meta"])
    if (meta.get("encoder_sha256"), meta.get("max_tokens")) != (encoder_sha256, params.embed.max_tokens):
        return {}
    matrix, digests = load_item_embeddings(params), read_parquet(paths["digests"])
    return dict(zip(digests["sha256"], matrix[digests["item_idx"].to_numpy()]))


def load_item_embeddings(params: Params) -> np.ndarray:
    return np.load(embedding_paths(params)["matrix"])


@dataclass(frozen=True)
class EmbeddedCatalogue:
    matrix: np.ndarray          # [n_items + 1, dim], row = item_idx, row 0 zero
    item_idx: np.ndarray        # the catalogue's item_idx, in the order of texts
    texts: list[str]
    digests: list[str]          # text_digests(texts)
    encoded: int                # texts that went through the encoder (the rest were reused)


def embed_catalogue(item_index: pd.DataFrame, items: pd.DataFrame, cfg: EmbedParams,
                    reuse: dict[str, np.ndarray] | None = None) -> EmbeddedCatalogue:
    """Unit vectors for every catalogue item, ordered by item_idx; a text found in `reuse` (by
    digest) keeps its vector instead of being encoded again."""
    catalogue = item_index.merge(items, on="item", how="left").sort_values("item_idx")
    texts = item_texts(catalogue, list(cfg.fields), cfg.max_chars)
    missing = sum(1 for t in texts if not t)
    if missing:
        log.warning("%d of %d items have no text; they get the encoder's empty-text vector", missing, len(texts))
    reuse = reuse or {}
    digests = text_digests(texts)
    new = [i for i, d in enumerate(digests) if d not in reuse]
    if new or not reuse:
        encoder = load_text_encoder(cfg.encoder, select_device(cfg.device), cfg.max_tokens)
        encoded, dim = encoder.encode([texts[i] for i in new], cfg.batch_size, progress=True), encoder.dim
    else:
        encoded, dim = None, len(next(iter(reuse.values())))
    vectors = np.empty((len(texts), dim), dtype=np.float32)
    if encoded is not None:
        vectors[new] = encoded
    kept = np.setdiff1d(np.arange(len(texts)), new)
    if len(kept):
        vectors[kept] = np.stack([reuse[digests[i]] for i in kept])
    item_idx = catalogue["item_idx"].to_numpy()
    matrix = np.zeros((len(texts) + 1, dim), dtype=np.float32)
    matrix[item_idx] = vectors
    return EmbeddedCatalogue(matrix, item_idx, texts, digests, len(new))


def run(params: Params) -> dict:
    """Pipeline step `embed`: every catalogue item's text embedding, row = item_idx."""
    split = load_split(params)
    encoder_sha256 = encoder_fingerprint(params.embed.encoder)
    done = embed_catalogue(split.item_index, read_parquet(validated_paths(params)["items"]), params.embed,
                           previous_vectors(params, encoder_sha256))
    paths = embedding_paths(params)
    paths["meta"].unlink(missing_ok=True)   # written last: a run cut short leaves nothing to reuse
    write_npy(done.matrix, paths["matrix"])
    write_parquet(pd.DataFrame({"item_idx": done.item_idx, "sha256": done.digests}), paths["digests"])
    meta = {
        "encoder": params.embed.encoder, "encoder_sha256": encoder_sha256,
        "max_tokens": params.embed.max_tokens, "dim": int(done.matrix.shape[1]),
        "items": len(done.texts), "texts_sha256": hashlib.sha256("\n".join(done.texts).encode("utf-8")).hexdigest(),
        "empty_texts": sum(1 for t in done.texts if not t), "encoded": done.encoded,
        "reused": len(done.texts) - done.encoded,
    }
    write_json(meta, paths["meta"])
    log.info("embedded %d items with %s (dim %d): %d encoded, %d unchanged texts reused from the last run",
             len(done.texts), params.embed.encoder, meta["dim"], done.encoded, meta["reused"])
    return meta


def embedding_meta(params: Params) -> dict:
    return read_json(embedding_paths(params)["meta"])
