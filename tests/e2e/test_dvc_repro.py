"""`dvc repro` on a 400-shopper sample, in a fresh git + DVC repository under tmp; then `dvc push`
to a real S3 object store (SeaweedFS) and `dvc pull` into a fresh clone.

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
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

from components.core.config.loader import load_params
from components.core.io import read_json
from components.core.ports import free_port
from components.deployment.object_store import S3Keys, start_object_store
from components.registry.store import registered
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
# the analyses on a small sample of reviewers, quickly (their figures are tested in tests/analysis): 120
# reviewers' 839 reviews give every label to each part of the split (80 leave valid without a negative one);
# both stages took 107 s against 150 s at 200 reviewers, one thread
QUICK_REVIEWS = {"sample_users": 120, "sentiment": {"epochs": 1, "trainable_layers": 1, "bootstrap": 50, "max_tokens": 128},
                 "topics": {"candidates": [4]}}


@dataclass(frozen=True)
class Reproduced:
    repo: Path
    params_file: Path
    reads: Path
    env: dict[str, str]
    first: str    # the output of the first `dvc repro`


@pytest.fixture(scope="module")
def reproduced(tmp_path_factory, mirror_dir) -> Reproduced:
    """The repository as a project checkout holds it (the project's .gitignore and .dvc/config),
    after one `dvc repro` of the whole pipeline and its analyses."""
    tmp_path = tmp_path_factory.mktemp("dvc")
    repo = tmp_path / "repo"
    params_file = write_params(repo, data={"sample_users": SAMPLE_USERS}, train=QUICK_TRAINING,
                               validate={"expectations_dir": "expectations"},   # the repository's copy
                               reviews=QUICK_REVIEWS)
    for file in ("dvc.yaml", "pyproject.toml", ".gitignore"):
        shutil.copy(ROOT / file, repo)
    for folder in ("expectations", "components", "bento", "data/accepted_feedback", "data/erasures"):
        shutil.copytree(ROOT / folder, repo / folder, ignore=shutil.ignore_patterns("__pycache__"))
    reads = tmp_path / "reads"
    env = clean_env(PYTHONPATH=str(repo), DVC_NO_ANALYTICS="1", **{READS_ENV: str(reads)})
    dvc = str(BIN / "dvc")

    run(["git", "init", "-q"], cwd=repo, env=env, timeout=30)
    run([dvc, "init", "-q"], cwd=repo, env=env, timeout=60)
    shutil.copy(ROOT / ".dvc" / "config", repo / ".dvc" / "config")
    first = run([dvc, "repro"], cwd=repo, env=env, timeout=900)
    return Reproduced(repo, params_file, reads, env, first)


def test_repro_runs_the_pipeline_then_nothing(reproduced, mirror_dir):
    repo, params_file, reads, env, first = (reproduced.repo, reproduced.params_file, reproduced.reads,
                                            reproduced.env, reproduced.first)
    dvc = str(BIN / "dvc")
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


def _recommend(repo: Path, env: dict[str, str]) -> list[str]:
    """The served recommender's rows for one text request (greedy: no draw), from the repo's store."""
    printed = run([str(BIN / "interest"), "recommend", "--text", "gentle cleanser for dry skin", "--policy", "greedy",
                   "--params", str(repo / "params.yaml")], cwd=repo, env={**env, "PYTHONPATH": str(repo)}, timeout=300)
    rows = [line for line in printed.splitlines() if line.rstrip().endswith("text greedy")]
    assert len(rows) == load_params(repo / "params.yaml", environ={}).serving.top_k, printed
    return rows


def test_a_fresh_clone_pulls_every_output_from_the_object_store(reproduced, tmp_path):
    """dvc push to SeaweedFS over S3 (signatures checked), git clone, dvc pull: nothing to
    reproduce, and the pulled outputs register as the same bundle, which answers as the first."""
    repo, env, dvc = reproduced.repo, reproduced.env, str(BIN / "dvc")
    keys = S3Keys("interest-test", "a-secret-of-the-test")
    params = load_params(reproduced.params_file, environ={})
    store = start_object_store(params.object_store, tmp_path / "store", s3_port=free_port(), keys=keys)
    remote, signed = params.object_store.dvc_remote, {**env, **keys.env()}   # DVC's S3 client reads the keys here
    try:
        run([dvc, "remote", "modify", "--local", remote, "endpointurl", store.endpoint], cwd=repo, env=env, timeout=60)
        assert "files pushed" in run([dvc, "push"], cwd=repo, env=signed, timeout=600)
        run(["git", "add", "-A"], cwd=repo, env=env, timeout=60)
        run(["git", "-c", "user.name=test", "-c", "user.email=test@localhost", "commit", "-qm", "repro"],
            cwd=repo, env=env, timeout=60)
        committed = run(["git", "ls-files"], cwd=repo, env=env, timeout=60).split()
        assert not [f for f in committed if f.startswith(("models/", "reports/", "bentoml_home/", "data/split"))]

        clone = tmp_path / "clone"
        run(["git", "clone", "-q", str(repo), str(clone)], cwd=tmp_path, env=env, timeout=60)
        run([dvc, "remote", "modify", "--local", remote, "endpointurl", store.endpoint], cwd=clone, env=env, timeout=60)
        refused = subprocess.run([dvc, "pull"], cwd=clone, env={**signed, "AWS_SECRET_ACCESS_KEY": "not-the-secret"},
                                 capture_output=True, text=True, timeout=300)
        assert refused.returncode != 0 and "Forbidden" in refused.stdout + refused.stderr
        assert not (clone / "models").exists()
        run([dvc, "pull"], cwd=clone, env=signed, timeout=600)
        status = run([dvc, "status"], cwd=clone, env={**env, "PYTHONPATH": str(clone)}, timeout=120)
        assert "Data and pipelines are up to date." in status, status
    finally:
        store.stop()

    # the model registry (BentoML's store) is not DVC's: the clone registers the pulled outputs
    run([str(BIN / "interest"), "register", "--params", str(clone / "params.yaml")], cwd=clone,
        env={**env, "PYTHONPATH": str(clone)}, timeout=300)
    digests = [registered(load_params(r / "params.yaml", environ={}))[1]["bundle_sha256"] for r in (repo, clone)]
    assert digests[0] == digests[1]
    assert _recommend(clone, env) == _recommend(repo, env)
