"""The pods the KubernetesExecutor would start for the project's DAGs, rendered without a cluster
(`airflow kubernetes generate-dag-yaml`) from kubernetes/pod_template.yaml and the settings
docs/scale-out.md names. No Kubernetes runs on these machines: this checks the specs, not a run."""
from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from components.pipeline import STEPS
from tests.e2e.helpers import BIN, ROOT, clean_env, run

pytestmark = pytest.mark.e2e
IMAGE, TAG, NAMESPACE = "registry.example/interest-platform", "1.0", "interest"
TASKS = {"interest_training": {s.name for s in STEPS},
         "feedback_monitor": {"monitor_feedback", "accept_feedback", "feedback_report"}}


def test_every_task_of_both_dags_renders_as_a_pod_of_the_project_template(tmp_path):
    env = clean_env(AIRFLOW_HOME=str(tmp_path / "home"), AIRFLOW__CORE__DAGS_FOLDER=str(ROOT / "dags"),
                    AIRFLOW__CORE__LOAD_EXAMPLES="False", AIRFLOW__CORE__EXECUTOR="KubernetesExecutor",
                    AIRFLOW__KUBERNETES_EXECUTOR__NAMESPACE=NAMESPACE,
                    AIRFLOW__KUBERNETES_EXECUTOR__WORKER_CONTAINER_REPOSITORY=IMAGE,
                    AIRFLOW__KUBERNETES_EXECUTOR__WORKER_CONTAINER_TAG=TAG,
                    AIRFLOW__KUBERNETES_EXECUTOR__POD_TEMPLATE_FILE=str(ROOT / "kubernetes" / "pod_template.yaml"))
    airflow = str(BIN / "airflow")
    run([airflow, "db", "migrate"], cwd=tmp_path, env=env, timeout=180)
    for dag_id, tasks in TASKS.items():
        out = tmp_path / dag_id
        run([airflow, "kubernetes", "generate-dag-yaml", dag_id, "--logical-date", "2026-01-01T00:00:00+00:00",
             "--output-path", str(out)], cwd=tmp_path, env=env, timeout=180)
        pods = [yaml.safe_load(p.read_text()) for p in sorted(Path(out).rglob("*.yml"))]
        assert {pod["metadata"]["annotations"]["task_id"] for pod in pods} == tasks
        for pod in pods:
            assert pod["metadata"]["namespace"] == NAMESPACE
            (container,) = pod["spec"]["containers"]
            assert container["image"] == f"{IMAGE}:{TAG}"
            assert "airflow.sdk.execution_time.execute_workload" in container["args"]
            env_vars = {e["name"]: e for e in container["env"]}
            assert env_vars["INTEREST_PROJECT_DIR"]["value"] == "/project"
            assert env_vars["INTEREST_PSEUDONYM_KEY"]["valueFrom"]["secretKeyRef"]["name"] == "interest-secrets"
            assert {m["mountPath"] for m in container["volumeMounts"]} == {"/project", "/data/mirror"}
            assert pod["spec"]["volumes"][0]["persistentVolumeClaim"]["claimName"] == "interest-project"
