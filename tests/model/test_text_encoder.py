"""The real pretrained encoder behind the text-similarity baseline."""
from __future__ import annotations

import numpy as np
import pytest

from components.core.config.loader import load_params
from components.core.device import select_device
from components.evaluation.metrics import mask_history, top_k_items
from components.features.text_encoder import load_text_encoder
from components.models.baselines import TextSimilarityScorer
from tests.conftest import ROOT

pytestmark = pytest.mark.model


def test_text_similarity_returns_the_nearest_text():
    cfg = load_params(ROOT / "params.yaml", environ={}).embed
    encoder = load_text_encoder(cfg.encoder, select_device("cpu"), cfg.max_tokens)
    texts = ["red matte lipstick", "shampoo for dry scalp", "matte red lip colour", "nail polish remover"]
    embeddings = np.vstack([np.zeros((1, encoder.dim), np.float32), encoder.encode(texts, batch_size=8)])
    scorer = TextSimilarityScorer(embeddings, recency_decay=0.5)
    scores = scorer.score([[1]])
    assert scores[0, 1] == pytest.approx(1.0, abs=1e-5)  # cosine with itself
    assert top_k_items(mask_history(scores, [[1]], np.array([3])), 1)[0, 0] == 3  # lipstick -> lip colour
    recent_lipstick = scorer.score([[2, 1]])[0]  # the most recent item weighs most in the profile
    assert recent_lipstick[1] > recent_lipstick[2]
