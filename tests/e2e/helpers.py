"""Shared by the end-to-end tests: child commands in a clean environment, and checks on outputs."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from components.core.config.loader import load_params
from components.core.io import read_json, read_parquet
from components.data.split import load_split
from components.data.validate import validated_paths
from components.pipeline import STEP_NAMES

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.prefix) / "bin"


def clean_env(**extra: str) -> dict[str, str]:
    """The caller's environment minus its Airflow and INTEREST settings, the venv's commands first.

    A developer's AIRFLOW__DATABASE__SQL_ALCHEMY_CONN or INTEREST__SPLIT__OUT_DIR must not send a
    test's writes outside its tmp folder.
    """
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "INTEREST", "BENTOML"))}
    env["PATH"] = f"{BIN}{os.pathsep}{env.get('PATH', '')}"
    env.update(extra)
    return env


def _tail(output: str, lines: int = 80) -> str:
    return "\n".join(output.splitlines()[-lines:])


def run(cmd: list[str], cwd: Path, env: dict[str, str], timeout: float) -> str:
    """Run cmd and return its combined output; fail with the output's tail if it fails or hangs.

    The command gets its own process group so that a hang kills every process it started
    (Airflow ignores SIGTERM while a task runs, and runs tasks in child processes).
    """
    proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, start_new_session=True)
    try:
        output, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        output, _ = proc.communicate()
        pytest.fail(f"`{' '.join(cmd)}` did not finish in {timeout:.0f}s:\n{_tail(output)}")
    if proc.returncode:
        pytest.fail(f"`{' '.join(cmd)}` exited with {proc.returncode}:\n{_tail(output)}")
    return output


def check_data_outputs(params_file: Path, users: int) -> dict:
    """The validated and split tables and metrics/data.json of a sampled run agree and are plausible."""
    params = load_params(params_file, environ={})
    stats = read_json(params.path(params.split.metrics_file))
    assert stats["users"] == users
    assert stats["interactions"] >= 5 * users  # Beauty is a 5-core: every shopper has 5+ items
    assert 0.9 * users <= stats["test_cases"] <= users
    assert 0 < stats["valid_cases"] <= users
    assert 0 < stats["train_interactions"] < stats["interactions"]
    assert 0 < stats["cold_items"] < stats["catalogue_items"]

    validated = validated_paths(params)
    assert len(read_parquet(validated["interactions"])) == stats["interactions"]
    assert len(read_parquet(validated["items"])) > 0
    split = load_split(params)
    assert len(split.item_index) == stats["catalogue_items"]
    assert len(split.train) == stats["train_interactions"]
    assert len(split.cases) == stats["valid_cases"] + stats["test_cases"]
    return stats


PIPELINE = STEP_NAMES   # the DVC stages and the DAG's tasks alike
# enough to exercise every stage on a sample: two epochs, then one of each final pass (the defaults'
# 5 + 6 took three times the epochs' time)
QUICK_TRAINING = {"epochs": 2, "max_minutes": 0, "final_epochs": 1, "final_newest_passes": 1}


def check_model_outputs(params_file: Path) -> dict:
    """The trained model was evaluated next to the baselines and registered in the model store."""
    params = load_params(params_file, environ={})
    assert params.path(params.train.model_file).is_file()
    assert read_json(params.path(params.train.metrics_file))["epochs_run"] >= 1
    ranking = read_json(params.path(params.evaluate.metrics_file))
    assert {"interest_model", "popularity", "fusion"} <= set(ranking["unmasked"]["test"])
    registered = read_json(params.path(params.registry.record_file))
    assert registered["tag"].startswith(f"{params.registry.model_name}:")
    assert registered["test_ndcg@10"] == ranking["unmasked"]["test"]["fusion"]["ndcg@10"]   # the served one's
    return registered
