"""A real `airflow dags test interest_training` on a 400-shopper sample of the Beauty mirror.

Airflow gets a private AIRFLOW_HOME (SQLite) under tmp; the DAG reads the params.yaml of a
project folder under tmp ($INTEREST_PROJECT_DIR) holding a sampled params.yaml and a copy of
expectations/, so every output lands there too.
"""
from __future__ import annotations

import re
import shutil

import pytest

from tests.conftest import SAMPLE_USERS, write_params
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

DAG_ID = "interest_training"


def test_dag_run_writes_the_split(tmp_path, mirror_dir):
    project = tmp_path / "project"
    params_file = write_params(project, data={"sample_users": SAMPLE_USERS}, train=QUICK_TRAINING)
    shutil.copytree(ROOT / "expectations", project / "expectations")
    env = clean_env(
        AIRFLOW_HOME=str(tmp_path / "airflow_home"),
        AIRFLOW__CORE__DAGS_FOLDER=str(ROOT / "dags"),
        AIRFLOW__CORE__LOAD_EXAMPLES="False",
        INTEREST_PROJECT_DIR=str(project),
        INTEREST_TASK_RETRIES="0",  # a failing task fails the run at once instead of in 10 minutes
    )
    run([str(BIN / "airflow"), "db", "migrate"], cwd=tmp_path, env=env, timeout=120)
    output = run([str(BIN / "airflow"), "dags", "test", DAG_ID], cwd=tmp_path, env=env, timeout=600)

    assert re.search(r"DagRun Finished: .* state=success,", output)
    for task_id in PIPELINE:
        assert f"[DAG TEST] end task task_id={task_id}" in output
    stats = check_data_outputs(params_file, users=SAMPLE_USERS)
    assert f"split: {stats['users']} users" in output  # the split task ran on these very tables
    check_model_outputs(params_file)
