"""`interest`: one command per pipeline step. Each loads params, calls one component, reports."""
from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Optional

import typer

from components.errors import InterestError
from components.log import configure_logging

app = typer.Typer(
    help="interest-platform: learn what each shopper is interested in and recommend products.\n\n"
    "Every step reads params.yaml (or --params / $INTEREST_PARAMS) and writes the outputs that "
    "dvc.yaml declares; `dvc repro` runs them in order.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)

ParamsOpt = typer.Option(None, "--params", "-p", help="parameters file (default: $INTEREST_PARAMS or ./params.yaml)")


def _params(path: Optional[Path]):
    from components.config import load_params
    return load_params(path)


def _echo_json(obj) -> None:
    typer.echo(json.dumps(obj, indent=2, sort_keys=True, default=str))


@app.callback()
def _main(log_level: str = typer.Option("INFO", help="DEBUG, INFO, WARNING or ERROR")) -> None:
    configure_logging(log_level)


@app.command()
def ingest(params: Optional[Path] = ParamsOpt) -> None:
    """Read the configured dataset (mirror, else download) into typed Parquet tables.

    Writes interactions, items and reviews under ingest.out_dir, user ids pseudonymised, and a
    summary.json that names the source files and the fields the source lacks.
    """
    from dataclasses import asdict

    from components.ingest import ingest as run
    _echo_json(asdict(run(_params(params))))


@app.command()
def validate(params: Optional[Path] = ParamsOpt) -> None:
    """Check the ingested tables with the Great Expectations suites in validate.expectations_dir.

    Items first, then interactions and reviews against the cleaned catalogue. Writes the validated
    tables and quarantine.parquet under validate.out_dir, GX results (JSON) and Data Docs under
    validate.reports_dir; exits non-zero with a summary when an expectation set to `stop` fails.
    """
    from dataclasses import asdict

    from components.validate import validate as run
    _echo_json(asdict(run(_params(params))))


@app.command()
def split(params: Optional[Path] = ParamsOpt) -> None:
    """Leave-one-out split by time per user plus the cold-item hold-out; prints the statistics.

    Reads the validated tables and writes item_index, train and cases under split.out_dir, and
    the split statistics to split.metrics_file (metrics/data.json).
    """
    from components.split import run_split
    from components.validate import validated_paths
    p = _params(params)
    paths = validated_paths(p)
    _echo_json(run_split(p, paths["interactions"], paths["items"]))


@app.command()
def embed(params: Optional[Path] = ParamsOpt) -> None:
    """Encode every catalogue item's text with the pretrained text encoder (embed.encoder).

    Writes an [n_items + 1, dim] matrix aligned with the split's item index to embed.out_dir;
    uses CUDA when present and shows progress.
    """
    from components.embed import run_embed
    from components.validate import validated_paths
    p = _params(params)
    _echo_json(run_embed(p, validated_paths(p)["items"]))


@app.command()
def train(params: Optional[Path] = ParamsOpt) -> None:
    """Train the interest model (model.* and train.* in params.yaml); keep the best checkpoint.

    Early-stops on validation NDCG@10 and writes train.model_file, train.metrics_file and the
    per-epoch curves. For data-parallel training run it under torchrun, e.g.
    `torchrun --nproc_per_node 2 -m components.cli train` (gloo on CPU, NCCL on CUDA).
    """
    from components.train import run_train
    summary = run_train(_params(params))
    if int(os.environ.get("RANK", "0")) == 0:
        _echo_json(summary)


@app.command()
def evaluate(params: Optional[Path] = ParamsOpt) -> None:
    """Rank the whole catalogue for every valid and test case with every model and baseline.

    Tunes the fusion weights on valid, evaluates both protocols (unmasked, masked) on valid,
    test, test_warm and test_cold; writes evaluate.metrics_file, the comparison CSV and the HTML
    report; prints the headline (test, unmasked) figures.
    """
    from components.evaluate import HEADLINE, run_evaluate
    protocol, subset = HEADLINE
    _echo_json(run_evaluate(_params(params))[protocol][subset])


@app.command("finetune-cold")
def finetune_cold(params: Optional[Path] = ParamsOpt) -> None:
    """Fit the cold-start adapter (coldstart.* in params.yaml) on warm items only.

    Text-only representations of new products learn to land where trained items' are; the
    trained weights stay frozen. Writes coldstart.model_file, the artefact the service loads.
    """
    from components.coldstart import run_finetune_cold
    _echo_json(run_finetune_cold(_params(params)))


@app.command("evaluate-cold")
def evaluate_cold(params: Optional[Path] = ParamsOpt) -> None:
    """Cold-item and new-shopper figures before and after cold-start fine-tuning.

    Writes coldstart.metrics_file (metrics/cold_start.json) and the NDCG@10-by-history plot data.
    """
    from components.evaluate_cold import run_cold_start_eval
    results = run_cold_start_eval(_params(params))
    _echo_json({k: results[k] for k in ("cases", "cold_items", "warm_items", "checks")})


@app.command("add-items")
def add_items(file: Path = typer.Argument(..., help="CSV or JSON lines: item, title[, brand, categories, description]"),
              params: Optional[Path] = ParamsOpt) -> None:
    """Add new products to the catalogue: embedded and recommendable at once, no retraining."""
    from components.coldstart import run_add_items
    _echo_json(run_add_items(_params(params), file))


@app.command()
def recommend(text: Optional[str] = typer.Option(None, "--text", "-t", help="a shopper's statement of interests"),
              history: Optional[str] = typer.Option(None, "--history", help="comma-separated item ids, oldest first"),
              k: Optional[int] = typer.Option(None, "--k", help="list length (default coldstart.top_k)"),
              params: Optional[Path] = ParamsOpt) -> None:
    """Recommend for a shopper: from a text, from their first items, or (neither) a diverse popular default."""
    from components.coldstart import recommend as run
    items = [i.strip() for i in history.split(",") if i.strip()] if history else []
    table = run(_params(params), text=text, history=items, k=k)
    typer.echo(table.to_string(index=False))


@app.command()
def register(params: Optional[Path] = ParamsOpt) -> None:
    """Save the trained model to the BentoML model store (the registry) as a candidate.

    Records its test metrics, the params that made it and the data version (DVC hash of the
    split) as metadata, labelled stage=candidate; prints the tag.
    """
    from components.registry import register_model
    _echo_json(register_model(_params(params)))


@app.command("params-for")
def params_for(out_dir: Path = typer.Argument(..., help="folder the copy and all its outputs go to"),
               dataset: Optional[str] = typer.Option(None, "--dataset", help="data.dataset of the copy, e.g. Scientific"),
               sample_users: Optional[int] = typer.Option(None, "--sample-users", help="data.sample_users of the copy"),
               assignments: Optional[list[str]] = typer.Option(
                   None, "--set", "-S", help="section.key=value for the copy (repeatable), e.g. split.cold_item_fraction=0"),
               params: Optional[Path] = ParamsOpt) -> None:
    """Write a params.yaml copy into OUT_DIR whose outputs land there: run another dataset, a
    sample or a setting beside the project's own outputs (then `interest <step> --params
    OUT_DIR/params.yaml`)."""
    from components.config import assignment_overrides, default_params_path, derive_params, merge_overrides
    overrides = assignment_overrides(assignments or [])
    data = {k: v for k, v in (("dataset", dataset), ("sample_users", sample_users)) if v is not None}
    merge_overrides(overrides, {"data": data} if data else {})
    typer.echo(derive_params(params or default_params_path(), out_dir, overrides))


@app.command("bench-quality")
def bench_quality(params: Optional[Path] = ParamsOpt) -> None:
    """Print our test figures next to the published Beauty results (same protocol, R@10 / N@10)."""
    from components.benchmark import quality_report
    typer.echo(quality_report(_params(params)))


def main() -> None:
    try:
        app()
    except InterestError as exc:
        typer.secho(f"error: {exc}", err=True, fg=typer.colors.RED)
        sys.exit(2)


if __name__ == "__main__":
    main()
