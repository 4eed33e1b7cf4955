"""`dvc repro` on a 400-shopper sample, in a fresh git + DVC repository under tmp.

Then the analyses beside the pipeline (sentiment, feedback_report), reviews sampled.
The repository holds copies of dvc.yaml, pyproject.toml, expectations/, components/ and bento/
(the last stage builds the bento) and a sampled
params.yaml whose data.mirror_dir is absolute, so the ingest stage depends on the real mirror
outside the repository. PYTHONPATH makes the stages' `interest` command run the copied code.
Every stage records the params.yaml keys its step read: dvc.yaml must list each of them, or a
changed key would leave the stage's outputs stale while `dvc repro` says all is up to date.
"""
from __future__ import annotations

import json
import shutil

import pytest

from components.core.config import load_params
from components.core.io import read_json
from components.pipeline import ANALYSIS_NAMES, READS_ENV
from tests.conftest import SAMPLE_USERS, write_params
from tests.dvc_stages import stages, uncovered_reads, unlisted_locations
from tests.e2e.helpers import (
    BIN,
    PIPELINE,
    QUICK_TRAINING,
    ROOT,
    check_data_outputs,
    check_model_outputs,
    clean_env,
    run,
)

pytestmark = pytest.mark.e2e
# the analyses on a small sample of reviewers, quickly (their figures are tested in tests/analysis)
QUICK_REVIEWS = {"sample_users": 200, "sentiment": {"epochs": 1, "trainable_layers": 1, "bootstrap": 50},
                 "topics": {"candidates": [4]}}


def test_repro_runs_the_pipeline_then_nothing(tmp_path, mirror_dir):
    repo = tmp_path / "repo"
    params_file = write_params(repo, data={"sample_users": SAMPLE_USERS}, train=QUICK_TRAINING,
                               validate={"expectations_dir": "expectations"},   # the repository's copy
                               reviews=QUICK_REVIEWS)
    for file in ("dvc.yaml", "pyproject.toml"):
        shutil.copy(ROOT / file, repo)
    for folder in ("expectations", "components", "bento", "data/accepted_feedback", "data/erasures"):
        shutil.copytree(ROOT / folder, repo / folder, ignore=shutil.ignore_patterns("__pycache__"))
    reads = tmp_path / "reads"
    env = clean_env(PYTHONPATH=str(repo), DVC_NO_ANALYTICS="1", **{READS_ENV: str(reads)})
    dvc = str(BIN / "dvc")

    run(["git", "init", "-q"], cwd=repo, env=env, timeout=30)
    run([dvc, "init", "-q"], cwd=repo, env=env, timeout=60)
    first = run([dvc, "repro"], cwd=repo, env=env, timeout=900)
    every = PIPELINE + ANALYSIS_NAMES
    for stage in every:
        assert f"Running stage '{stage}'" in first

    dvc_stages, params = stages(), load_params(params_file, environ={})
    read = {stage: read_json(reads / f"{stage}.json") for stage in every}
    unlisted = {stage: uncovered_reads(dvc_stages[stage], read[stage]) for stage in every}
    assert unlisted == {stage: [] for stage in every}, "dvc.yaml: these stages read params they do not list"
    untracked = {stage: unlisted_locations(dvc_stages[stage], read[stage], params) for stage in every}
    assert untracked == {stage: [] for stage in every}, "dvc.yaml: these stages use files they do not list"

    stats = check_data_outputs(params_file, users=SAMPLE_USERS)
    check_model_outputs(params_file)
    metrics = json.loads(run([dvc, "metrics", "show", "--json", "metrics/data.json"], cwd=repo, env=env,
                             timeout=60))
    shown = metrics[""]["data"]["metrics/data.json"]["data"]
    assert shown == stats
    lock = (repo / "dvc.lock").read_text()
    assert f"path: {mirror_dir}" in lock  # the mirror outside the repository is a tracked dependency

    second = run([dvc, "repro"], cwd=repo, env=env, timeout=120)
    for stage in every:
        assert f"Stage '{stage}' didn't change, skipping" in second
    assert "Running stage" not in second
    assert "Data and pipelines are up to date." in second
