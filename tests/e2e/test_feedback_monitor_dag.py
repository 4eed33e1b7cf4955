"""The closed loop through Airflow: `airflow dags test feedback_monitor` on a real SQLite feedback
store filled by the simulator against the real service on the registered sample.

Pass 1 (ordinary traffic) is measured against the training data and triggers nothing; pass 2
(the shift: new products, and shoppers who click only a surge phrase) is compared with pass 1, its
click-through rate falls, so it writes the accepted feedback as a new data version and emits the
asset the (unpaused) interest_training DAG is scheduled on, which queues a run of it in Airflow's
database; ingest then appends exactly that version. Pass 3 (a bot flood) is held
back: no data version, no asset event, and the decision says why. Writing the pending windows
again (a retried task) changes nothing.
"""
from __future__ import annotations

import re
import sqlite3

import pytest

from components.core.config.loader import load_params
from components.core.io import read_json
from components.monitoring.monitor import read_history
from components.monitoring.retraining import accept_pending
from components.pipeline import ACCEPTED_FEEDBACK_ASSET, run_step
from components.benches.simulate import held_out_shoppers, simulate
from tests.e2e.helpers import BIN, ROOT, clean_env, run
from tests.e2e.service_process import post, sample_service_env, start_service

pytestmark = pytest.mark.e2e
TOKEN = "loop-token"
SHOPPERS = 300


def test_feedback_monitor_dag_turns_drifting_feedback_into_a_data_version_and_triggers_training(served_sample, tmp_path):
    overrides = {"INTEREST__MONITOR__STATE_FILE": str(tmp_path / "state.json"),
                 "INTEREST__MONITOR__OUT_DIR": str(tmp_path / "windows"),
                 "INTEREST__MONITOR__REPORTS_DIR": str(tmp_path / "reports"),
                 "INTEREST__MONITOR__DRIFT_DIR": str(tmp_path / "drift"),
                 "INTEREST__MONITOR__METRICS_FILE": str(tmp_path / "online.json"),
                 "INTEREST__MONITOR__PLOT_FILE": str(tmp_path / "online.png"),
                 "INTEREST__MONITOR__RETRAIN__MIN_EVENTS": "40",
                 "INTEREST__INGEST__FEEDBACK_DIR": str(tmp_path / "accepted"),
                 "INTEREST__INGEST__OUT_DIR": str(tmp_path / "ingested")}
    service_env = {**sample_service_env(served_sample, tmp_path, TOKEN), **overrides}
    params = load_params(served_sample.root / "params.yaml", environ=service_env)
    # a small window needs many engagements: ordinary shoppers click any shown item now and then,
    # surging ones click every shown item of the surge and nothing else
    ordinary = load_params(served_sample.root / "params.yaml", environ={**service_env, "INTEREST__SIMULATE__CLICK_OTHER": "0.25"})
    surging = load_params(served_sample.root / "params.yaml", environ={
        **service_env, "INTEREST__SIMULATE__CLICK_OTHER": "0", "INTEREST__SIMULATE__SURGE_CLICK": "1"})
    airflow_env = clean_env(AIRFLOW_HOME=str(tmp_path / "airflow_home"), AIRFLOW__CORE__DAGS_FOLDER=str(ROOT / "dags"),
                            AIRFLOW__CORE__LOAD_EXAMPLES="False", INTEREST_PROJECT_DIR=str(served_sample.root),
                            INTEREST_TASK_RETRIES="0", **service_env)
    run([str(BIN / "airflow"), "db", "migrate"], cwd=tmp_path, env=airflow_env, timeout=180)
    run([str(BIN / "airflow"), "dags", "reserialize"], cwd=tmp_path, env=airflow_env, timeout=180)
    run([str(BIN / "airflow"), "dags", "unpause", "interest_training"], cwd=tmp_path, env=airflow_env, timeout=180)

    def monitor_dag() -> tuple[str, dict]:
        output = run([str(BIN / "airflow"), "dags", "test", "feedback_monitor"], cwd=tmp_path, env=airflow_env, timeout=600)
        assert re.search(r"DagRun Finished: .* state=success,", output)
        return output, read_json(tmp_path / "online.json")["latest"]

    def asset_events() -> list[tuple[str, str]]:
        with sqlite3.connect(tmp_path / "airflow_home" / "airflow.db") as db:
            events = db.execute("SELECT a.name, e.extra FROM asset_event e JOIN asset a ON a.id = e.asset_id").fetchall()
            queued = db.execute("SELECT q.target_dag_id FROM asset_dag_run_queue q").fetchall()
        return events, queued

    server = start_service(service_env, tmp_path / "server.log")
    try:
        shoppers = held_out_shoppers(params, SHOPPERS)
        simulate(ordinary, server.url, TOKEN, cases=shoppers, surge="", new_products=0)
        output, first = monitor_dag()
        assert first["drift"]["reference"] == "training" and first["retrain"]["retrain"] is False
        assert first["review_texts"] == 0 and "no review texts in this window" in output   # feedback_report skipped
        assert asset_events() == ([], [])

        shifted = simulate(surging, server.url, TOKEN, cases=shoppers, surge="auto", new_products=20)
        assert shifted["new_products"] == 20 and shifted["surge_impressions"] > 0
        output, second = monitor_dag()
        assert second["drift"]["reference"] == f"window {first['name']}"
        assert second["retrain"]["retrain"] is True and any("ctr of" in r for r in second["retrain"]["reasons"])
        [(name, extra)], queued = asset_events()
        assert name == ACCEPTED_FEEDBACK_ASSET and queued == [("interest_training",)]
        version = accept_pending(params, read_history(params))
        assert version["written"] == [] and f'"{version["sha256"]}"' in extra   # a retry writes nothing new
        assert version["windows"] == [first["name"], second["name"]]

        bots = [{"event_id": f"bot-{n}", "kind": "click", "user": "a-bot", "item": shoppers["target"].iloc[0]}
                for n in range(params.monitor.max_events_per_minute + 10)]
        assert post(server.url, "feedback", {"events": bots}, TOKEN).status_code == 200
    finally:
        server.stop()
    output, flooded = monitor_dag()
    assert "not_a_bot_flood" in flooded["retrain"]["held_back"] and "no retraining: held back" in output
    assert len(asset_events()[0]) == 1   # no second data version

    ingested = run_step("ingest", params)["feedback"]
    assert ingested["sha256"] == version["sha256"] and ingested["appended"] > 0
