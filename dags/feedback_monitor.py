"""Every hour (or when triggered from the UI), one pass over the feedback the service stored
since the last pass: `interest monitor-feedback` as an Airflow DAG.

monitor_feedback checks the events with the feedback suite (expectations/feedback.json: bad rows
and bot floods quarantined with the expectation they failed), keeps the valid ones under
monitor.out_dir, appends the online metrics per model version, A/B arm and policy to
monitor.metrics_file (with a plot), writes the Evidently drift and data-quality reports under
monitor.drift_dir, and decides whether to retrain (monitor.retrain.*). A pass that fails leaves
the watermark where it was, so the retry redoes it whole.

accept_feedback runs only when the pass decided to retrain (it is skipped otherwise, saying why):
it writes the pending accepted feedback to ingest.feedback_dir, a new data version, and emits
the `interest_accepted_feedback` asset, on which the interest_training DAG is scheduled. Writing
a window again changes nothing, so a retried task adds no second data version.

feedback_report runs when the pass kept review texts: the sentiment classifier scores them, they
join the review topics, and the improvement-suggestions report (reviews.report_file) is rewritten.
Tasks read $INTEREST_PROJECT_DIR/params.yaml (default: the folder above dags/).
"""
from __future__ import annotations

from airflow.sdk import Asset, dag, get_current_context, task
from airflow.sdk.exceptions import AirflowSkipException

from components.pipeline import ACCEPTED_FEEDBACK_ASSET, dag_settings, project_params

ACCEPTED_FEEDBACK = Asset(name=ACCEPTED_FEEDBACK_ASSET, group="interest")


@dag(
    dag_id="feedback_monitor",
    doc_md=__doc__,
    schedule="@hourly",
    tags=["interest-platform", "monitoring"],
    **dag_settings(),
)
def feedback_monitor():
    @task(doc_md="Check the new feedback (Great Expectations), quarantine bad rows, compute the online metrics, "
                 "write the drift and data-quality reports, decide on retraining.")
    def monitor_feedback() -> dict:
        from components.monitoring.monitor import monitor

        found = monitor(project_params(__file__)).window
        return {k: found[k] for k in ("name", "events", "slates", "check", "quarantined_by_expectation", "retrain",
                                      "review_texts")}

    @task(outlets=[ACCEPTED_FEEDBACK],
          doc_md="When the pass decided to retrain: the pending feedback becomes a new data version (ingest.feedback_dir).")
    def accept_feedback(window: dict) -> dict:
        from components.monitoring.monitor import read_history
        from components.monitoring.retraining import accept_pending

        if not window["retrain"]["retrain"]:
            raise AirflowSkipException(f"no retraining: {window['retrain']['why']}")
        params = project_params(__file__)
        version = accept_pending(params, read_history(params))
        get_current_context()["outlet_events"][ACCEPTED_FEEDBACK].extra = {
            "sha256": version["sha256"], "windows": version["windows"], "window": window["name"]}
        return version

    @task(doc_md="When the pass kept review texts: score them (sentiment), place them in the review topics and "
                 "rewrite the improvement-suggestions report.")
    def feedback_report(window: dict) -> dict:
        from components.pipeline import run_step

        if not window["review_texts"]:
            raise AirflowSkipException("no review texts in this window: the report is unchanged")
        return run_step("feedback_report", project_params(__file__))

    window = monitor_feedback()
    accept_feedback(window)
    feedback_report(window)


feedback_monitor()
