"""The interest model on real samples: learns, trains deterministically (and data-parallel
identically) without changing the process's torch state, and ranks cold items through its text path."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from components.core.config.loader import load_params
from components.core.io import read_json
from components.data.split import load_split
from components.features.embeddings import load_item_embeddings
from components.models.interest_model import InterestModel
from components.models.interest_scorer import ModelScorer
from components.pipeline import run_step
from components.training.train import fit, model_config, training_tensors
from tests.conftest import derived_params, earlier_split

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

    tp = params.train.model_copy(update={"epochs": 30, "patience": 30, "batch_size": 16, "lr": 0.005, "max_minutes": 0,
                                         "weight_average": 0.0})    # judged on the weights as trained: 4 steps an epoch
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
    before = (torch.are_deterministic_algorithms_enabled(), torch.random.get_rng_state())
    a = fit(cfg, tp, inputs, targets, text, known, lambda m: {"ndcg@10": 0.0})
    b = fit(cfg, tp, inputs, targets, text, known, lambda m: {"ndcg@10": 0.0})
    assert a.param_digests == b.param_digests
    after = (torch.are_deterministic_algorithms_enabled(), torch.random.get_rng_state())
    assert before[0] == after[0] and torch.equal(before[1], after[1])   # the process is left as it was


@pytest.mark.e2e
def test_two_torchrun_nodes_train_in_lock_step_from_the_carried_model(prepared_sample, tmp_path):
    """train.processes 2: the train step starts two torchrun agents, each a node of one process,
    meeting at a c10d rendezvous on localhost, as two machines of a cluster would; on a new data
    version both start from the model selected on the version before (each rank reads the same
    file); every rank ends with the same parameters and rank 0 writes the outputs once."""
    quick = {"epochs": 3, "patience": 3, "max_minutes": 0}
    earlier = derived_params(prepared_sample, tmp_path, split={"out_dir": str(earlier_split(prepared_sample, tmp_path / "v1"))},
                             train={**quick, "final_epochs": 0, "final_newest_passes": 0})
    first = run_step("train", load_params(earlier, environ={}))
    params_file = derived_params(prepared_sample, tmp_path, train={**quick, "processes": 2,
                                                                   "agents_dir": str(tmp_path / "agents")})
    proc = subprocess.run([str(BIN / "interest"), "train", "--params", str(params_file)], capture_output=True, text=True,
                          timeout=900, cwd=tmp_path, env={"PATH": f"{BIN}:/usr/bin:/bin", "HOME": str(tmp_path)})
    assert proc.returncode == 0, proc.stderr[-3000:]
    params = load_params(params_file)
    summary = read_json(params.path(params.train.metrics_file))
    assert summary["processes"] == 2 and len(summary["param_digests"]) == 2 and len(set(summary["param_digests"])) == 1
    assert summary["warm_start"]["used_by_rank"] == [True, True]   # DDP would copy rank 0's weights over a fresh rank 1
    assert summary["warm_start"]["valid_ndcg@10_before"] == pytest.approx(first["best_valid_ndcg@10"], abs=1e-6)
    assert sorted(p.name for p in (tmp_path / "agents").iterdir()) == ["agent0.log", "agent1.log"]
    assert params.path(params.train.model_file).is_file()


def test_a_failed_torchrun_agent_stops_the_other_and_says_why(prepared_sample, tmp_path):
    params_file = derived_params(prepared_sample, tmp_path, train={"epochs": 3, "patience": 3, "max_minutes": 0,
                                                                   "processes": 2, "agents_dir": str(tmp_path / "agents"),
                                                                   "device": "no-such-device"})
    proc = subprocess.run([str(BIN / "interest"), "train", "--params", str(params_file)], capture_output=True, text=True,
                          timeout=300, cwd=tmp_path, env={"PATH": f"{BIN}:/usr/bin:/bin", "HOME": str(tmp_path)})
    assert proc.returncode != 0
    assert "torchrun agent" in proc.stderr and "no-such-device" in proc.stderr, proc.stderr[-3000:]


def test_cold_items_are_ranked_through_the_text_path(prepared_sample):
    """An item never seen in training still gets a text-based representation and a finite score."""
    params = prepared_sample
    split = load_split(params)
    text = torch.from_numpy(load_item_embeddings(params))
    cfg = model_config(params, len(split.item_index), text.shape[1])
    known = torch.zeros(cfg.n_items + 1)
    known[torch.as_tensor(split.train["item_idx"].unique())] = 1
    model = InterestModel(cfg, text, known).eval()
    reps = model.item_representations()
    cold = split.item_index.loc[split.item_index.is_cold, "item_idx"].to_numpy()
    assert torch.all(reps[cold].norm(dim=1) > 0)
    scores = ModelScorer(model).score([[1, 2, 3]])
    assert np.isfinite(scores[0, cold]).all()
    assert np.isneginf(scores[0, 0])
