"""The interest model on real samples: learns, trains data-parallel identically, round-trips
through the BentoML model store, and ranks cold items through its text path."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from components.config import load_params
from components.embed import load_item_embeddings
from components.io import read_json
from components.recommender import ModelScorer, load_checkpoint
from components.split import load_split
from components.train import fit, model_config, training_tensors
from tests.conftest import derived_params

pytestmark = pytest.mark.model
BIN = Path(sys.executable).parent


def test_model_overfits_a_tiny_sample(prepared_sample):
    """Loss falls and training-target recall rises: the model can learn at all."""
    params = prepared_sample
    split = load_split(params)
    users = sorted(split.train["user"].unique())[:64]
    train = split.train[split.train["user"].isin(users)]
    text = torch.from_numpy(load_item_embeddings(params))
    cfg = model_config(params, len(split.item_index), text.shape[1])
    cfg = type(cfg)(**{**cfg.to_dict(), "dropout": 0.0})
    inputs, targets = training_tensors(train, cfg.max_len)
    last = targets[:, -1].numpy()

    def recall_on_train(model) -> dict:
        scores = ModelScorer(model).score([row[row != 0].tolist() for row in inputs])
        top = np.argsort(-scores, axis=1)[:, :10]
        return {"ndcg@10": float((top == last[:, None]).any(1).mean())}

    tp = params.train.model_copy(update={"epochs": 30, "patience": 30, "batch_size": 16, "lr": 0.005, "max_minutes": 0})
    known = torch.ones(cfg.n_items + 1)
    result = fit(cfg, tp, inputs, targets, text, known, recall_on_train)
    losses = [h["loss"] for h in result.history]
    assert len(inputs) == 64
    assert losses[-1] < 0.5 * losses[0]
    assert result.history[0]["valid_ndcg@10"] < 0.3 < result.best_valid


def test_training_is_seeded_and_deterministic_on_cpu(prepared_sample):
    params = prepared_sample
    split = load_split(params)
    text = torch.from_numpy(load_item_embeddings(params))
    cfg = model_config(params, len(split.item_index), text.shape[1])
    inputs, targets = training_tensors(split.train, cfg.max_len)
    tp = params.train.model_copy(update={"epochs": 1, "max_minutes": 0})
    known = torch.ones(cfg.n_items + 1)
    a = fit(cfg, tp, inputs, targets, text, known, lambda m: {"ndcg@10": 0.0})
    b = fit(cfg, tp, inputs, targets, text, known, lambda m: {"ndcg@10": 0.0})
    assert a.param_digests == b.param_digests


@pytest.mark.e2e
def test_two_process_torchrun_keeps_ranks_identical(prepared_sample, tmp_path):
    params_file = derived_params(prepared_sample, tmp_path)
    proc = subprocess.run(
        [str(BIN / "torchrun"), "--standalone", "--nproc_per_node", "2", "-m", "components.cli",
         "train", "--params", str(params_file)],
        capture_output=True, text=True, timeout=600, cwd=tmp_path,
        env={"PATH": f"{BIN}:/usr/bin:/bin", "OMP_NUM_THREADS": "1", "HOME": str(tmp_path)},
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    summary = read_json(load_params(params_file).path(Path("metrics/train.json")))
    assert summary["processes"] == 2
    assert len(summary["param_digests"]) == 2 and len(set(summary["param_digests"])) == 1


@pytest.mark.e2e
def test_registered_model_ranks_like_the_in_memory_one(prepared_sample, tmp_path):
    params_file = derived_params(prepared_sample, tmp_path)
    env = {"PATH": f"{BIN}:/usr/bin:/bin", "HOME": str(tmp_path), "BENTOML_HOME": str(tmp_path / "store"),
           "BENTOML_DO_NOT_TRACK": "True"}
    for command in ("train", "finetune-cold", "register"):
        proc = subprocess.run([str(BIN / "interest"), command, "--params", str(params_file)], capture_output=True,
                              text=True, timeout=600, cwd=tmp_path, env=env)
        assert proc.returncode == 0, proc.stderr[-3000:]
    params = load_params(params_file)
    split = load_split(params)
    histories = [[int(i) for i in h] for h in split.cases[split.cases.split == "test"]["history"].tolist()[:50]]
    in_memory = ModelScorer(load_checkpoint(params.path(params.coldstart.model_file))[0]).score(histories)
    code = ("import json,sys,numpy as np; from components.config import load_params; "
            "from components.registry import load_registered_scorer; "
            "s, meta = load_registered_scorer(load_params(sys.argv[1])); "
            "np.save(sys.argv[2], s.score(json.loads(sys.argv[3]))); print(json.dumps(meta['data_version']))")
    out = tmp_path / "scores.npy"
    proc = subprocess.run([sys.executable, "-c", code, str(params_file), str(out), json.dumps(histories)],
                          capture_output=True, text=True, timeout=300, cwd=tmp_path, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert json.loads(proc.stdout.strip().splitlines()[-1])["sha256"]
    np.testing.assert_array_equal(np.load(out), in_memory)


def test_cold_items_are_ranked_through_the_text_path(prepared_sample):
    """An item never seen in training still gets a text-based representation and a finite score."""
    params = prepared_sample
    split = load_split(params)
    text = torch.from_numpy(load_item_embeddings(params))
    cfg = model_config(params, len(split.item_index), text.shape[1])
    known = torch.zeros(cfg.n_items + 1)
    known[torch.as_tensor(split.train["item_idx"].unique())] = 1
    from components.model import InterestModel
    model = InterestModel(cfg, text, known).eval()
    reps = model.item_representations()
    cold = split.item_index.loc[split.item_index.is_cold, "item_idx"].to_numpy()
    assert torch.all(reps[cold].norm(dim=1) > 0)
    scores = ModelScorer(model).score([[1, 2, 3]])
    assert np.isfinite(scores[0, cold]).all()
    assert np.isneginf(scores[0, 0])
