"""The embed step on the prepared sample, run again: unchanged texts keep their vectors, only a
changed one goes through the real encoder, and other encoder settings start afresh."""
from __future__ import annotations

import shutil

import numpy as np
import pytest

from components.core.config.loader import load_params
from components.core.device import select_device
from components.core.io import read_parquet, write_parquet
from components.data.validate import validated_paths
from components.features.embeddings import item_texts, load_item_embeddings, previous_vectors
from components.features.text_encoder import encoder_fingerprint, load_text_encoder
from components.pipeline import run_step
from tests.conftest import derived_params, write_params

pytestmark = pytest.mark.model


def test_a_second_run_encodes_only_the_text_that_changed(prepared_sample, tmp_path):
    p = prepared_sample
    shutil.copytree(p.path(p.embed.out_dir), tmp_path / "embeddings")
    shutil.copytree(p.path(p.validation.out_dir), tmp_path / "validated")
    params = load_params(derived_params(p, tmp_path, validate={"out_dir": str(tmp_path / "validated")},
                                        embed={"out_dir": str(tmp_path / "embeddings")}), environ={})
    before = load_item_embeddings(p)

    again = run_step("embed", params)
    assert again["encoded"] == 0 and again["reused"] == again["items"]
    assert np.array_equal(load_item_embeddings(params), before)

    items_file = validated_paths(params)["items"]
    items = read_parquet(items_file)
    items.loc[items.index[0], "title"] = "A travel case for brushes, never sold before"
    write_parquet(items, items_file)
    changed = run_step("embed", params)
    assert changed["encoded"] == 1 and changed["reused"] == changed["items"] - 1
    after = load_item_embeddings(params)
    moved = np.flatnonzero(np.abs(after - before).max(1) > 0)
    assert len(moved) == 1
    text = item_texts(items.iloc[:1], list(params.embed.fields), params.embed.max_chars)
    encoder = load_text_encoder(params.embed.encoder, select_device("cpu"), params.embed.max_tokens)
    assert np.allclose(after[moved[0]], encoder.encode(text, batch_size=1)[0], atol=1e-5)

    shorter = load_params(write_params(tmp_path / "shorter", embed={"out_dir": str(tmp_path / "embeddings"),
                                                                     "max_tokens": 64}), environ={})
    same = encoder_fingerprint(params.embed.encoder)
    assert previous_vectors(params, same) and previous_vectors(shorter, same) == {}
    assert previous_vectors(params, "other weights") == {}
