"""The interest model's training pipeline on Airflow, one task per pipeline step, in the order of
components.pipeline.STEPS (ingest -> validate -> split -> embed -> train -> finetune_cold ->
evaluate -> evaluate_cold -> segments -> register -> gate -> build_bento): a new model reaches production only
through the gate, and the production version's bento is built last.

Each task loads params.yaml and runs the same step as the matching `interest` command and
`dvc repro` stage, so Airflow adds scheduling, retries and history but no logic of its own. Tasks
return the step's small summary; the tables themselves live under the folders params.yaml names.

It runs when the feedback_monitor DAG writes a new data version (the `interest_accepted_feedback`
asset: accepted feedback appended to the interactions), or when triggered from the UI; training
the same data again would only repeat the same model.

The project folder is $INTEREST_PROJECT_DIR (default: the folder above dags/); its
params.yaml is read at the start of every task, with the usual INTEREST__SECTION__KEY
environment overrides. A successful validate task emits the `interest_validated_data`
asset (its extra: the validated tables' paths), so a retraining DAG can use
`schedule=[Asset("interest_validated_data")]`.
Failed tasks are retried $INTEREST_TASK_RETRIES times (default 2) after 5 minutes; tests set 0
so that a failure shows at once.
"""
from __future__ import annotations

from airflow.sdk import Asset, chain, dag, get_current_context, task

from components.pipeline import (  # a step's code is imported when its task runs
    ACCEPTED_FEEDBACK_ASSET,
    STEPS,
    dag_settings,
    project_params,
)

VALIDATED_DATA = Asset(name="interest_validated_data", group="interest")
OUTLETS = {"validate": [VALIDATED_DATA]}   # step -> the assets a successful run of it updates


def run_step(step_name: str) -> dict:
    """A task's body: the step on params.yaml read at run time, not parse time, so a params.yaml
    edit applies to the next run."""
    from components.pipeline import run_step as run

    summary = run(step_name, project_params(__file__))
    for asset in OUTLETS.get(step_name, []):
        get_current_context()["outlet_events"][asset].extra = summary["outputs"]
    return summary


@dag(
    dag_id="interest_training",
    doc_md=__doc__,
    schedule=[Asset(name=ACCEPTED_FEEDBACK_ASSET, group="interest")],
    tags=["interest-platform", "training"],
    **dag_settings(),
)
def interest_training():
    chain(*(task(run_step, task_id=step.name, outlets=OUTLETS.get(step.name, []),
                 doc_md=f"{step.summary}\n\n{step.details}")(step.name)
            for step in STEPS))


interest_training()
