"""Every hour (or when triggered from the UI), one pass over the feedback the service stored
since the last pass: `interest monitor-feedback` as an Airflow DAG.

The pass checks the events with the feedback suite (expectations/feedback.json: bad rows and bot
floods quarantined with the expectation they failed), keeps the valid ones under monitor.out_dir,
and appends the online metrics per model version, A/B arm and policy to monitor.metrics_file
(with a plot). A pass that fails leaves the watermark where it was, so the retry redoes it whole.
Tasks read $INTEREST_PROJECT_DIR/params.yaml (default: the folder above dags/).
"""
from __future__ import annotations

from airflow.sdk import dag, task

from components.pipeline import dag_settings, project_params


@dag(
    dag_id="feedback_monitor",
    doc_md=__doc__,
    schedule="@hourly",
    tags=["interest-platform", "monitoring"],
    **dag_settings(),
)
def feedback_monitor():
    @task(doc_md="Check the new feedback (Great Expectations), quarantine bad rows, compute the online metrics.")
    def monitor_feedback() -> dict:
        from components.monitoring.monitor import monitor

        window = monitor(project_params(__file__))
        return {k: window[k] for k in ("name", "events", "slates", "check", "quarantined_by_expectation")}

    monitor_feedback()


feedback_monitor()
