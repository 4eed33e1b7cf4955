"""The interest model's training pipeline on Airflow:
ingest -> validate -> split -> embed -> train -> finetune_cold -> evaluate -> evaluate_cold -> register.

Each task loads params.yaml and calls the same `components` function as the matching
`interest` CLI step (and `dvc repro` stage), so Airflow adds scheduling, retries and history
but no logic of its own. Tasks pass only small values (paths, summaries) between them; the
tables themselves live under the folders params.yaml names.

The project folder is $INTEREST_PROJECT_DIR (default: the folder above dags/); its
params.yaml is read at the start of every task, with the usual INTEREST__SECTION__KEY
environment overrides. A successful validate task emits the `interest_validated_data`
asset, so a retraining DAG can use `schedule=[Asset("interest_validated_data")]`.
Failed tasks are retried $INTEREST_TASK_RETRIES times (default 2) after 5 minutes; tests set 0
so that a failure shows at once.
"""
from __future__ import annotations

import os
from datetime import datetime, timedelta, timezone
from pathlib import Path

from airflow.sdk import Asset, chain, dag, get_current_context, task

PROJECT_DIR_ENV = "INTEREST_PROJECT_DIR"
RETRIES_ENV = "INTEREST_TASK_RETRIES"
VALIDATED_DATA = Asset(name="interest_validated_data", group="interest")


def _params():
    """Read params at run time, not parse time, so a params.yaml edit applies to the next run."""
    from components.config import load_params

    project_dir = Path(os.environ.get(PROJECT_DIR_ENV) or Path(__file__).resolve().parents[1])
    return load_params(project_dir / "params.yaml")


@dag(
    dag_id="interest_training",
    doc_md=__doc__,
    schedule="@daily",
    start_date=datetime(2025, 1, 1, tzinfo=timezone.utc),
    catchup=False,
    max_active_runs=1,  # runs write the same output folders
    tags=["interest-platform", "training"],
    default_args={
        "owner": "interest-platform",
        "retries": int(os.environ.get(RETRIES_ENV, "2")),
        "retry_delay": timedelta(minutes=5),
    },
)
def interest_training():
    @task
    def ingest() -> dict:
        """Raw shop files -> canonical Parquet tables; returns the ingest summary."""
        from dataclasses import asdict

        from components.ingest import ingest as run

        return asdict(run(_params()))

    @task(outlets=[VALIDATED_DATA])
    def validate() -> dict[str, str]:
        """Check the ingested tables; returns the validated tables' paths, also sent with the asset event."""
        from components.validate import validate as run
        from components.validate import validated_paths

        params = _params()
        run(params)
        paths = {name: str(path) for name, path in validated_paths(params).items()}
        get_current_context()["outlet_events"][VALIDATED_DATA].extra = paths
        return paths

    @task
    def split(validated: dict[str, str]) -> dict:
        """Leave-one-out split plus cold-item hold-out; returns the split statistics."""
        from components.split import run_split

        return run_split(_params(), Path(validated["interactions"]), Path(validated["items"]))

    @task
    def embed(validated: dict[str, str]) -> dict:
        """Item text embeddings with the pretrained encoder; returns the encoder and text hash."""
        from components.embed import run_embed

        return run_embed(_params(), Path(validated["items"]))

    @task
    def train() -> dict:
        """Train the interest model, best checkpoint kept; returns the training summary."""
        from components.train import run_train

        return run_train(_params())

    @task
    def finetune_cold() -> dict:
        """Fit the cold-start adapter on warm items; returns its alignment summary."""
        from components.coldstart import run_finetune_cold

        return run_finetune_cold(_params())

    @task
    def evaluate_cold() -> dict:
        """Cold-item and new-shopper figures; returns the cold-start checks."""
        from components.evaluate_cold import run_cold_start_eval

        return run_cold_start_eval(_params())["checks"]

    @task
    def evaluate() -> dict:
        """Every model and baseline, both protocols; returns the headline (unmasked test) figures."""
        from components.evaluate import HEADLINE, run_evaluate

        protocol, subset = HEADLINE
        return run_evaluate(_params())[protocol][subset]

    @task
    def register() -> dict:
        """Save the model to the BentoML store as a candidate; returns its tag."""
        from components.registry import register_model

        return register_model(_params())

    validated = validate()
    chain(ingest(), validated, split(validated), embed(validated), train(), finetune_cold(), evaluate(), evaluate_cold(),
          register())


interest_training()
