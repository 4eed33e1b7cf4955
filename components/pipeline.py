"""The pipeline's one step list.

Every step is `run(params) -> summary` in its own module. The CLI's step commands, the Airflow
DAG's tasks and their order, `interest run` (which the Makefile calls) and the tests are made
from this list; dvc.yaml, the DVC front door, is checked against it (stage names and order, deps =
the import closure of each step's module, params = the keys each step reads: tests/unit and
tests/e2e). This module stays light: the DAG file imports it at every parse, so a step's module
is imported only when the step runs.

    python -m components.pipeline     # prints the step list
"""
from __future__ import annotations

import importlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable

if TYPE_CHECKING:
    from components.core.config.schema import Params

# set to a folder, every step run writes <step>.json there: the params.yaml keys it read
READS_ENV = "INTEREST_RECORD_PARAMS_READS"
# the DAGs: where the project (its params.yaml) is, and how often a failed task is retried
PROJECT_DIR_ENV = "INTEREST_PROJECT_DIR"
RETRIES_ENV = "INTEREST_TASK_RETRIES"
RETRY_DELAY_ENV = "INTEREST_TASK_RETRY_DELAY_SECONDS"
RETRY_DELAY_SECONDS = 300
# the Airflow asset feedback_monitor updates when it writes a new data version; interest_training runs on it
ACCEPTED_FEEDBACK_ASSET = "interest_accepted_feedback"


@dataclass(frozen=True)
class Step:
    name: str      # the DVC stage and the Airflow task id
    module: str    # whose run(params) -> summary does the work
    summary: str   # one line: what it does
    details: str   # what it reads and writes (the command's --help)

    @property
    def command(self) -> str:
        """The `interest` command that runs the step."""
        return self.name.replace("_", "-")

    def run(self, params: Params) -> dict[str, Any]:
        return importlib.import_module(self.module).run(params)


STEPS: tuple[Step, ...] = (
    Step("ingest", "components.data.ingest",
         "Read the configured dataset (mirror, else download) into typed Parquet tables.",
         "Writes interactions, items and reviews under ingest.out_dir, shopper ids pseudonymised, and "
         "a summary.json that names the source files and the fields the source lacks."),
    Step("validate", "components.data.validate",
         "Check the ingested tables with the Great Expectations suites in validate.expectations_dir.",
         "Items first, then interactions and reviews against the cleaned catalogue. Writes the validated "
         "tables and quarantine.parquet under validate.out_dir, GX results (JSON) and Data Docs under "
         "validate.reports_dir; exits non-zero with a summary when an expectation set to `stop` fails."),
    Step("split", "components.data.split",
         "Leave-one-out split by time per shopper plus the cold-item hold-out; prints the statistics.",
         "Reads the validated tables; writes item_index, train and cases under split.out_dir and the "
         "split statistics to split.metrics_file (metrics/data.json)."),
    Step("embed", "components.features.embeddings",
         "Encode every catalogue item's text with the pretrained text encoder (embed.encoder).",
         "Writes an [n_items + 1, dim] matrix aligned with the split's item index to embed.out_dir; "
         "uses CUDA when present and shows progress."),
    Step("train", "components.training.train",
         "Train the interest model (model.* and train.*); keep the best checkpoint.",
         "Early-stops on validation NDCG@10 and writes train.model_file, train.metrics_file and the "
         "per-epoch curves. train.processes > 1: data-parallel, as that many torchrun agents "
         "(nodes of one process, c10d rendezvous; gloo on CPU, NCCL on CUDA)."),
    Step("finetune_cold", "components.training.cold_start",
         "Fit the cold-start adapter and text match (coldstart.*) on warm items only.",
         "Text-only representations of new products learn to land where trained items' are; the "
         "trained weights stay frozen. Writes coldstart.model_file, the model the bundle serves."),
    Step("evaluate", "components.evaluation.ranking",
         "Rank the whole catalogue for every valid and test case with every model and baseline.",
         "Tunes the fusion weights on valid, evaluates both protocols (unmasked, masked) on valid, test, "
         "test_warm and test_cold; writes evaluate.metrics_file, the comparison CSV and the HTML report; "
         "prints the headline (test, unmasked) figures."),
    Step("evaluate_cold", "components.evaluation.cold_start",
         "Cold-item and new-shopper figures before and after cold-start fine-tuning.",
         "Writes coldstart.metrics_file (metrics/cold_start.json) and the NDCG@10-by-history plot data."),
    Step("segments", "components.training.segments",
         "Cluster the training split's shoppers into behaviour segments (segments.*) and profile each.",
         "Each shopper is the interest model's representation of their history next to activity, recency "
         "(with timestamps), text mix and rating habits (with ratings), weighted by segments.weights; the "
         "number of segments is the candidate with the highest silhouette, with its stability over two seeds. "
         "Groups under privacy.min_group_size are suppressed, counts get Laplace noise when "
         "privacy.laplace_epsilon > 0. Writes segments.metrics_file, the HTML report segments.report_file, "
         "the shopper -> segment assignment and the segments' item popularity, which the bundle carries for "
         "serving's popularity blend (serving.personalisation)."),
    Step("register", "components.registry.store",
         "Store the served recommender's bundle in the BentoML model store as a candidate.",
         "The bundle holds the cold-start model, the fusion weights, the baselines' fitted tables, the "
         "catalogue, the known shoppers with their segments and the segments' popularity; its metadata "
         "holds its own test figures, the params that made it and the data version. Prints the tag."),
    Step("gate", "components.deployment.gate",
         "Promote the new candidate only if it is not worse than production on the newest test cases.",
         "Scores both versions' served recommenders with the same code on the same cases (NDCG@10, and "
         "Recall@10 of new-product targets; tolerances in gate.*); the first candidate is promoted. Writes "
         "gate.metrics_file and the decision into the candidate's metadata; a rerun decides nothing twice."),
    Step("build_bento", "components.deployment.bento_build",
         "Build the deployable bento (bentoml build) for the version in production.",
         "Labels it with the model tag; a bento already built for that tag is reused. Writes "
         "gate.bento_record_file (the bento's tag)."),
)
STEP_NAMES: tuple[str, ...] = tuple(s.name for s in STEPS)

# Analyses beside the pipeline: DVC stages after its stages (dvc.yaml, same checks), commands of
# their own; not part of `interest run` nor of the training DAG, since no model version needs them.
ANALYSES: tuple[Step, ...] = (
    Step("sentiment", "components.training.sentiment",
         "Fine-tune the review sentiment classifier (reviews.sentiment.*) and test it against two baselines.",
         "Reads reviews.dataset (review text and stars; labels from stars), splits by shopper, fine-tunes the "
         "text encoder's top layers, and writes the model and reviews.sentiment.metrics_file: macro-F1 and "
         "per-class precision/recall on the held-out shoppers next to a majority-class and a TF-IDF + "
         "logistic-regression baseline, with bootstrap intervals of each difference."),
    Step("feedback_report", "components.analysis.feedback_report",
         "Topics of the review texts and the improvement-suggestions report for merchandisers.",
         "Clusters the reviews' text embeddings into topics named by their distinctive terms (c-TF-IDF), "
         "measures the negative share by topic per product group and its trend over time, scores the review "
         "texts sent to the service's feedback endpoint with the sentiment classifier, and writes "
         "reviews.topics.metrics_file and the HTML report reviews.report_file."),
)
ANALYSIS_NAMES: tuple[str, ...] = tuple(s.name for s in ANALYSES)


def dag_settings() -> dict[str, Any]:
    """What the project's DAGs share: no backfill, one run at a time (a run's outputs, or the
    feedback watermark, are shared with the next), and failed tasks retried
    $INTEREST_TASK_RETRIES times (default 2; tests set 0 so a failure shows at once), each
    $INTEREST_TASK_RETRY_DELAY_SECONDS later (default 300)."""
    from datetime import datetime, timedelta, timezone

    return {"start_date": datetime(2025, 1, 1, tzinfo=timezone.utc), "catchup": False, "max_active_runs": 1,
            "default_args": {"owner": "interest-platform", "retries": int(os.environ.get(RETRIES_ENV, "2")),
                             "retry_delay": timedelta(seconds=int(os.environ.get(RETRY_DELAY_ENV, RETRY_DELAY_SECONDS)))}}


def project_params(dag_file: str) -> "Params":
    """A task's params: $INTEREST_PROJECT_DIR/params.yaml (default: the folder above dags/), read
    when the task runs, so a params.yaml edit applies to the next run."""
    from components.core.config.loader import load_params
    from components.core.log import configure_logging

    configure_logging()
    return load_params(Path(os.environ.get(PROJECT_DIR_ENV) or Path(dag_file).resolve().parents[1]) / "params.yaml")


def get_step(name: str) -> Step:
    """A step or an analysis by its name or its command (`finetune_cold` or `finetune-cold`)."""
    for step in STEPS + ANALYSES:
        if name in (step.name, step.command):
            return step
    raise KeyError(f"no pipeline step {name!r}; the steps are {', '.join(STEP_NAMES)} "
                   f"and the analyses {', '.join(ANALYSIS_NAMES)}")


def select_steps(names: Iterable[str] = (), to: str | None = None) -> list[Step]:
    """The named steps (default: all) up to and including `to`, in pipeline order."""
    chosen = {get_step(n).name for n in names} or set(STEP_NAMES)
    if chosen - set(STEP_NAMES):
        raise KeyError(f"{', '.join(sorted(chosen - set(STEP_NAMES)))}: an analysis, not a pipeline step; "
                       f"run it with its own command")
    last = STEP_NAMES.index(get_step(to).name) if to else len(STEPS) - 1
    return [s for i, s in enumerate(STEPS) if s.name in chosen and i <= last]


def run_step(name: str, params: Params) -> dict[str, Any]:
    """Run one step; records the params keys it read when $INTEREST_RECORD_PARAMS_READS is set."""
    from components.core.config.reads import recording_reads
    from components.core.io import write_json

    step = get_step(name)
    with recording_reads() as reads:
        summary = step.run(params)
    folder = os.environ.get(READS_ENV)
    if folder:
        write_json(sorted(reads - {"root"}), Path(folder) / f"{step.name}.json")
    return summary


def describe() -> str:
    """The step list as a table (order, name, command, module, what it does), then the analyses."""
    name = max(len(s.name) for s in STEPS + ANALYSES)
    module = max(len(s.module) for s in STEPS + ANALYSES)

    def row(i: int, s: Step) -> str:
        return f"{i:>2}. {s.name:<{name}}  interest {s.command:<{name}}  {s.module:<{module}}  {s.summary}"
    return "\n".join(["the pipeline, in order (dvc.yaml stages, Airflow tasks, `interest run`):",
                      *(row(i, s) for i, s in enumerate(STEPS, 1)),
                      "analyses beside it (dvc.yaml stages after the pipeline's, each its own command):",
                      *(row(i, s) for i, s in enumerate(ANALYSES, len(STEPS) + 1))])


if __name__ == "__main__":
    print(describe())  # noqa: T201 - this module's command-line output
