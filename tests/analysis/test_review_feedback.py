"""Review-text feedback's parts on small inputs, with the real packaged encoder: the top layers on
the frozen layers' output are the full forward pass; a long review keeps its opening and verdict;
the head learns stars or labels; the split keeps every shopper in one part; topics recover planted
themes and are named by their own words. The two analyses end to end: test_review_steps.py."""
from __future__ import annotations

import pandas as pd
import pytest
import torch

from components.analysis.review_topics import fit_topics
from components.core.config.loader import load_params
from components.core.errors import DataSourceError
from components.features.text_encoder import load_text_encoder
from components.models.sentiment import LABELS, build_classifier, head_targets
from components.training.sentiment import split_by_shopper
from tests.conftest import ROOT


def test_top_layers_on_frozen_states_are_the_full_forward_pass():
    cfg = load_params(ROOT / "params.yaml", environ={}).reviews.sentiment
    model = build_classifier(cfg, cfg.encoder, torch.device("cpu")).eval()
    model.freeze_below(2)
    texts = ["great strings", "the pedal hums and the jack broke after a week of light use"]
    with torch.no_grad():
        assert torch.allclose(model(model.tokens(texts)), model.forward_top(model.frozen(texts)), atol=1e-5)
    trainable = {name.split(".")[2] for name, p in model.body.named_parameters() if p.requires_grad}
    assert trainable == {"4", "5"}   # encoder.layer.<i>. of the 6 layers: the top two


def test_a_long_review_keeps_its_opening_and_its_verdict():
    cfg = load_params(ROOT / "params.yaml", environ={}).reviews.sentiment.model_copy(
        update={"max_tokens": 32, "head_tokens": 8})
    model = build_classifier(cfg, cfg.encoder, torch.device("cpu"))
    tokenizer = model.encoder.tokenizer
    short = "nice tone"
    long = "Great look. " + "the finish is fine and " * 40 + "but it broke after a week"
    batch = model.tokens([short, long])
    assert batch["input_ids"].shape == (2, cfg.max_tokens)
    assert batch["input_ids"][0, :batch["attention_mask"][0].sum()].tolist() == tokenizer(short)["input_ids"]
    kept = tokenizer.decode(batch["input_ids"][1], skip_special_tokens=True)
    assert kept.startswith("great look.") and kept.endswith("but it broke after a week")
    assert batch["input_ids"][1, 0] == tokenizer.cls_token_id and batch["input_ids"][1, -1] == tokenizer.sep_token_id


@pytest.mark.parametrize("target", ["stars", "labels"])
def test_the_head_learns_stars_or_labels_and_answers_in_labels(target):
    cfg = load_params(ROOT / "params.yaml", environ={}).reviews.sentiment.model_copy(update={"target": target})
    targets, outputs = head_targets(pd.Series([5.0, 1.0, 3.0, 4.0, 2.0, 5.0]), cfg)
    if target == "stars":   # one output per star value, each summed into its label
        assert targets.tolist() == [4, 0, 2, 3, 1, 4] and outputs == [0, 0, 1, 2, 2]
    else:
        assert targets.tolist() == [2, 0, 1, 2, 0, 2] and outputs == [0, 1, 2]
    model = build_classifier(cfg, cfg.encoder, torch.device("cpu"), outputs)
    logits = torch.zeros(2, len(outputs))
    logits[1, 0] = 30.0   # all mass on the first output: negative either way
    probabilities = model.label_proba(logits)
    expected = torch.tensor([outputs.count(label) / len(outputs) for label in range(len(LABELS))])
    assert torch.allclose(probabilities[0], expected) and probabilities[1].argmax() == LABELS.index("negative")
    assert torch.allclose(probabilities.sum(1), torch.ones(2))


def test_each_shopper_is_in_one_part_and_a_tiny_sample_is_refused():
    cfg = load_params(ROOT / "params.yaml", environ={}).reviews.sentiment
    reviews = pd.DataFrame({"user": [f"u{i % 60}" for i in range(600)], "rating": [1, 3, 5, 5, 4] * 120,
                            "text": ["t"] * 600})
    parts = split_by_shopper(reviews, cfg)
    users = [set(part["user"]) for part in parts.values()]
    assert not (users[0] & users[1] or users[0] & users[2] or users[1] & users[2])
    assert sum(len(part) for part in parts.values()) == 600
    with pytest.raises(DataSourceError, match="have no \\['negative', 'neutral'\\] reviews"):
        split_by_shopper(reviews.assign(rating=5.0), cfg)


def test_topics_recover_planted_themes_named_by_their_words():
    params = load_params(ROOT / "params.yaml", environ={"INTEREST__REVIEWS__TOPICS__CANDIDATES": "[2, 3, 5]",
                                                        "INTEREST__REVIEWS__TOPICS__MIN_DF": "2"})
    cfg = params.reviews.topics
    themes = {"strings": ["the guitar strings {} snapped while tuning"],
              "pedal": ["the distortion pedal {} hums through the amp"],
              "case": ["the gig bag case {} zipper tore"]}
    words = ["quickly", "again", "today", "badly", "nicely", "sadly", "really", "truly", "clearly", "surely"]
    texts = pd.Series([t.format(w) for ts in themes.values() for t in ts for w in words])
    encoder = load_text_encoder(params.embed.encoder, torch.device("cpu"), params.embed.max_tokens)
    topics = fit_topics(texts, encoder.encode(texts.tolist(), 64), cfg)
    assert len(topics.terms) == 3 and max(topics.silhouette, key=topics.silhouette.get) == 3
    truth = [theme for theme, ts in themes.items() for _ in ts for _ in words]
    for topic in range(3):
        members = {truth[i] for i in range(len(truth)) if topics.labels[i] == topic}
        assert len(members) == 1                      # each topic is one theme
        assert members.pop() in topics.terms[topic]   # and its most distinctive words hold the theme's
