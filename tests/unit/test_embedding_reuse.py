"""Reused text vectors land on the rows of their items whatever item_idx the new split gave them."""
from __future__ import annotations

import numpy as np
import pandas as pd

from components.core.config.loader import load_params
from components.features.embeddings import embed_catalogue, item_texts, text_digests
from tests.conftest import ROOT


def test_reused_vectors_follow_their_texts_to_new_item_indices():
    cfg = load_params(ROOT / "params.yaml", environ={}).embed
    items = pd.DataFrame({"item": ["a", "b", "c"], "title": ["red lipstick", "dry shampoo", "nail file"]})
    texts = item_texts(items, list(cfg.fields), cfg.max_chars)
    vectors = {d: np.full(4, float(n), np.float32) for n, d in enumerate(text_digests(texts))}
    shuffled = pd.DataFrame({"item": ["c", "a", "b"], "item_idx": [1, 2, 3]})
    done = embed_catalogue(shuffled, items, cfg, vectors)
    assert done.encoded == 0
    assert done.matrix[:, 0].tolist() == [0.0, 2.0, 0.0, 1.0]   # row 0 padding; c, a, b
