"""The DAG folder parses the way Airflow's DAG processor parses it: no errors, no cycles, right wiring.

The DagBag is filled in a child process with a private AIRFLOW_HOME, so Airflow's logging and
settings set-up never leak into the other tests of the session.
"""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.e2e.helpers import BIN, PIPELINE, ROOT, clean_env, run

pytestmark = pytest.mark.e2e

DAG_ID = "interest_training"

PROBE = """
import json, sys
from airflow.dag_processing.dagbag import DagBag

HEAVY = ("torch", "great_expectations", "transformers", "bentoml", "sklearn")
before = set(sys.modules)   # what Airflow itself has imported before any DAG file is read

bag = DagBag(dag_folder=sys.argv[1], safe_mode=False)
dags = {}
for dag_id, dag in bag.dags.items():
    dag.check_cycle()
    dags[dag_id] = {
        "doc": dag.doc_md,
        "schedule": str(dag.schedule),
        "catchup": dag.catchup,
        "start_date": str(dag.start_date),
        "tags": sorted(dag.tags),
        "tasks": {
            t.task_id: {
                "upstream": sorted(t.upstream_task_ids),
                "retries": t.retries,
                "retry_delay_s": t.retry_delay.total_seconds(),
                "outlets": [getattr(o, "name", str(o)) for o in t.outlets],
            }
            for t in dag.tasks
        },
    }
result = {
    "heavy_imported_at_parse": sorted(m for m in HEAVY if m in sys.modules),
    "heavy_imported_by_airflow": sorted(m for m in HEAVY if m in before),
    "import_errors": bag.import_errors,
    "dags": dags,
    "components_imported_at_parse": sorted(m for m in sys.modules if m.split(".")[0] == "components"),
}
open(sys.argv[2], "w").write(json.dumps(result))
"""


@pytest.fixture(scope="module")
def parsed(tmp_path_factory) -> dict:
    tmp = tmp_path_factory.mktemp("dagbag")
    out = tmp / "dagbag.json"
    env = clean_env(AIRFLOW_HOME=str(tmp / "airflow_home"), AIRFLOW__CORE__LOAD_EXAMPLES="False")
    run([str(BIN / "python"), "-c", PROBE, str(ROOT / "dags"), str(out)], cwd=tmp, env=env, timeout=120)
    return json.loads(Path(out).read_text())


def test_dag_folder_imports_without_errors(parsed):
    assert parsed["import_errors"] == {}
    assert DAG_ID in parsed["dags"]


def test_top_level_code_imports_only_the_step_list(parsed):
    """DAG files are parsed every few seconds: the step list is all they read of components;
    pandas, torch and GX belong inside task bodies."""
    assert set(parsed["components_imported_at_parse"]) <= {"components", "components.pipeline"}
    assert not set(parsed["heavy_imported_at_parse"]) - set(parsed["heavy_imported_by_airflow"])


def test_pipeline_tasks_run_in_order(parsed):
    tasks = parsed["dags"][DAG_ID]["tasks"]
    assert list(tasks) == list(PIPELINE)
    assert tasks["ingest"]["upstream"] == []
    for before, after in zip(PIPELINE, PIPELINE[1:]):
        assert before in tasks[after]["upstream"], f"{after} does not wait for {before}"


def test_dag_settings(parsed):
    dag = parsed["dags"][DAG_ID]
    assert dag["doc"] and dag["schedule"] not in ("None", "")
    assert dag["catchup"] is False
    assert dag["tags"]
    for task_id, task in dag["tasks"].items():
        assert task["retries"] >= 1 and task["retry_delay_s"] > 0, task_id


def test_validate_emits_the_validated_data_asset(parsed):
    """A retraining DAG can be scheduled on `Asset("interest_validated_data")`."""
    assert "interest_validated_data" in parsed["dags"][DAG_ID]["tasks"]["validate"]["outlets"]


def test_feedback_monitor_runs_hourly_one_pass_at_a_time(parsed):
    dag = parsed["dags"]["feedback_monitor"]
    assert dag["doc"] and dag["schedule"] == "@hourly" and dag["catchup"] is False
    assert list(dag["tasks"]) == ["monitor_feedback", "accept_feedback", "feedback_report"]
    assert dag["tasks"]["accept_feedback"]["upstream"] == ["monitor_feedback"]
    assert dag["tasks"]["feedback_report"]["upstream"] == ["monitor_feedback"]
    assert all(task["retries"] >= 1 for task in dag["tasks"].values())


def test_a_new_data_version_triggers_training(parsed):
    """accept_feedback emits the asset interest_training is scheduled on."""
    assert parsed["dags"]["feedback_monitor"]["tasks"]["accept_feedback"]["outlets"] == ["interest_accepted_feedback"]
    assert "interest_accepted_feedback" in parsed["dags"][DAG_ID]["schedule"]
