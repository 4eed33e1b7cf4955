"""Airflow as a platform team runs it (components/deployment/airflow_cluster.py): PostgreSQL, Redis,
the API server, scheduler, DAG processor, triggerer and Celery workers as separate processes on
localhost, running the project's DAGs on a 400-shopper sample.

The Celery worker is killed (SIGKILL to its process group: the machine gone) while `train` runs;
a new worker takes the retry and the run still succeeds. Polls read Airflow's database (each
`airflow` CLI call costs seconds).
"""
from __future__ import annotations

import os
import shutil
import signal
import time

import pytest
from sqlalchemy import create_engine, text

from components.core.config.loader import load_params
from components.core.io import read_json
from components.core.ports import free_port
from components.deployment.airflow_cluster import start_airflow_cluster
from components.feedback.events import Event
from components.feedback.store import open_store
from components.pipeline import RETRIES_ENV, RETRY_DELAY_ENV, STEPS
from components.registry.store import stored_versions
from components.serving.recommender import load_recommender
from tests.conftest import SAMPLE_USERS, write_params
from tests.e2e.helpers import QUICK_TRAINING, ROOT

pytestmark = pytest.mark.e2e
KILLED_TASK = "train"
RUN_SECONDS = 900


def _task_states(engine, dag_id: str, run_id: str) -> dict[str, tuple]:
    with engine.connect() as db:
        rows = db.execute(text("SELECT task_id, state, try_number, queue FROM task_instance "
                               "WHERE dag_id = :d AND run_id = :r"), {"d": dag_id, "r": run_id})
        return {task: (state, tries, queue) for task, state, tries, queue in rows}


def _run_state(engine, dag_id: str, run_id: str) -> str | None:
    with engine.connect() as db:
        return db.execute(text("SELECT state FROM dag_run WHERE dag_id = :d AND run_id = :r"),
                          {"d": dag_id, "r": run_id}).scalar()


def _wait(condition, seconds: float, what: str):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if found := condition():
            return found
        time.sleep(1)
    pytest.fail(f"waited {seconds:.0f} s for {what}")


def _finished(engine, dag_id: str, run_id: str) -> str:
    return _wait(lambda: (state := _run_state(engine, dag_id, run_id)) in ("success", "failed") and state,
                 RUN_SECONDS, f"{dag_id} run {run_id} to finish")


def test_the_dags_run_through_celery_and_a_killed_worker_costs_one_retry(tmp_path, mirror_dir, monkeypatch):
    project = tmp_path / "project"
    params_file = write_params(project, data={"sample_users": SAMPLE_USERS}, train=QUICK_TRAINING,
                               airflow_cluster={"task_heartbeat_timeout_seconds": 20})
    shutil.copytree(ROOT / "expectations", project / "expectations")
    params = load_params(params_file, environ={})
    for name in [k for k in os.environ if k.startswith(("AIRFLOW", "INTEREST", "BENTOML"))]:
        monkeypatch.delenv(name)
    monkeypatch.setenv(RETRIES_ENV, "1")
    monkeypatch.setenv(RETRY_DELAY_ENV, "1")
    cluster = start_airflow_cluster(params.airflow_cluster, tmp_path / "cluster", project, ROOT / "dags",
                                    api_port=free_port())
    engine = create_engine(cluster.database_url)
    try:
        _wait(lambda: _count(engine, "SELECT count(*) FROM dag WHERE dag_id IN ('interest_training', 'feedback_monitor')") == 2,
              120, "the DAG processor to store both DAGs")
        cluster.airflow("dags", "unpause", "interest_training")
        cluster.airflow("dags", "trigger", "interest_training", "--run-id", "celery-1")

        _wait(lambda: _task_states(engine, "interest_training", "celery-1").get(KILLED_TASK, (None,))[0] == "running",
              RUN_SECONDS, f"{KILLED_TASK} to run")
        first_worker = read_json(cluster.root / "pids.json")["worker-worker1"]
        os.killpg(first_worker, signal.SIGKILL)
        os.waitpid(first_worker, 0)
        cluster.start_worker("worker2", params.airflow_cluster.worker_concurrency)

        assert _finished(engine, "interest_training", "celery-1") == "success", _task_states(engine, "interest_training", "celery-1")
        states = _task_states(engine, "interest_training", "celery-1")
        assert {task: state for task, (state, _, _) in states.items()} == {s.name: "success" for s in STEPS}
        assert {queue for _, _, queue in states.values()} == {"default"}   # Celery's queue, every task
        assert states[KILLED_TASK][1] == 2                                  # the killed try, then the retry
        assert all(tries == 1 for task, (_, tries, _) in states.items() if task != KILLED_TASK)
        second_log = (cluster.root / "logs" / "worker-worker2.log").read_text()
        assert "interest_training" in second_log and KILLED_TASK in second_log
        # idempotent: the retry rewrote the step's outputs whole (one run's epochs, not two runs'), and
        # the steps after it made one model version
        epochs = [row["epoch"] for row in read_json(params.path(params.train.history_file))]
        assert epochs == list(range(1, len(epochs) + 1))
        assert len(stored_versions(params)) == 1

        store = open_store(params)   # some feedback for the monitor's pass
        items = load_recommender(params).catalogue["item"].head(20).tolist()
        store.record([Event(f"e{n}", "click", f"shopper{n % 5}", item) for n, item in enumerate(items)])
        store.close()
        cluster.airflow("dags", "unpause", "feedback_monitor")
        cluster.airflow("dags", "trigger", "feedback_monitor", "--run-id", "celery-monitor")
        assert _finished(engine, "feedback_monitor", "celery-monitor") == "success"
        monitored = _task_states(engine, "feedback_monitor", "celery-monitor")
        assert monitored["monitor_feedback"][0] == "success"
        assert {state for state, _, _ in monitored.values()} <= {"success", "skipped"}
    finally:
        engine.dispose()
        cluster.stop()
    assert not (cluster.root / "pids.json").exists()


def _count(engine, query: str) -> int:
    with engine.connect() as db:
        return db.execute(text(query)).scalar()
