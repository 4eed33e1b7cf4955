"""`interest`: one command per pipeline step (made from components.pipeline.STEPS), `run` and
`steps` for the pipeline as a whole, and the commands around it (recommend, add-items,
params-for, store-up, airflow-cluster, bench-quality, bench-seeds, bench-train-scale, bench-peers, bench-serve, bench-consistency). Each loads params, calls components, prints the result."""
from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Callable, Optional

import typer

from components.core.errors import InterestError
from components.core.log import configure_logging
from components.pipeline import ANALYSES, STEPS, Step, describe, run_step, select_steps

app = typer.Typer(
    help="interest-platform: learn what each shopper is interested in and recommend products.\n\n"
    "Every step reads params.yaml (or --params / $INTEREST_PARAMS) and writes the outputs that "
    "dvc.yaml declares; `dvc repro` (or `interest run`) runs them in order, `interest steps` lists them.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)

ParamsOpt = typer.Option(None, "--params", "-p", help="parameters file (default: $INTEREST_PARAMS or ./params.yaml)")


def _params(path: Optional[Path]):
    from components.core.config.loader import load_params
    return load_params(path)


def _echo_json(obj) -> None:
    typer.echo(json.dumps(obj, indent=2, sort_keys=True, default=str))


def _is_main_process() -> bool:
    """Under torchrun only rank 0 prints."""
    return int(os.environ.get("RANK", "0")) == 0


@app.callback()
def _main(log_level: str = typer.Option("INFO", help="DEBUG, INFO, WARNING or ERROR")) -> None:
    configure_logging(log_level)


def _step_command(step: Step) -> Callable[..., None]:
    def command(params: Optional[Path] = ParamsOpt) -> None:
        summary = run_step(step.name, _params(params))
        if _is_main_process():
            _echo_json(summary)
    command.__name__ = step.name
    return command


for _step in STEPS + ANALYSES:
    app.command(_step.command, help=f"{_step.summary}\n\n{_step.details}")(_step_command(_step))


@app.command()
def steps() -> None:
    """List the pipeline's steps in order: name, command, module and what each does."""
    typer.echo(describe())


@app.command("dvc-deps")
def dvc_deps(check: bool = typer.Option(False, "--check", help="only name the stages whose module deps are stale; exit 1 if any")) -> None:
    """Rewrite dvc.yaml's module deps: each stage lists every project module its step imports
    (other deps, such as data and folders, stay as written). Run it after adding an import to a step."""
    from components.core.paths import PROJECT_DIR
    from components.pipeline_deps import stale_stages, write_dvc_deps

    path = PROJECT_DIR / "dvc.yaml"
    stale = stale_stages(path.read_text(encoding="utf-8")) if check else write_dvc_deps(path)
    if not stale:
        typer.echo("dvc.yaml's module deps are up to date")
    elif check:
        typer.echo(f"stale module deps in dvc.yaml: {', '.join(stale)} (run `interest dvc-deps`)", err=True)
        raise typer.Exit(1)
    else:
        typer.echo(f"rewrote the module deps of {', '.join(stale)}")


@app.command("run")
def run_pipeline(names: Optional[list[str]] = typer.Argument(None, help="steps to run (default: all), e.g. train evaluate"),
                 to: Optional[str] = typer.Option(None, "--to", help="stop after this step, e.g. --to evaluate"),
                 params: Optional[Path] = ParamsOpt) -> None:
    """Run pipeline steps in order without DVC's bookkeeping: all of them, the named ones, or all
    up to --to. Use it on a params copy (`interest params-for`); on the project's own params.yaml
    prefer `dvc repro`, which also skips what is up to date."""
    try:
        chosen = select_steps(names or [], to)
    except KeyError as exc:
        raise InterestError(str(exc.args[0])) from exc
    p = _params(params)
    for i, step in enumerate(chosen, 1):
        typer.secho(f"[{i}/{len(chosen)}] {step.name}: {step.summary}", bold=True)
        run_step(step.name, p)


@app.command("add-items")
def add_items(file: Path = typer.Argument(..., help="CSV or JSON lines: item, title[, brand, categories, description]"),
              params: Optional[Path] = ParamsOpt) -> None:
    """Add new products to the served catalogue: embedded and recommendable at once, no retraining.

    They are kept in serving.added_items_dir and join every later load of the recommender."""
    from components.serving.recommender import add_items_from_file
    _echo_json(add_items_from_file(_params(params), file))


@app.command()
def recommend(user: Optional[str] = typer.Option(None, "--user", "-u", help="a known shopper's (pseudonymised) id"),
              history: Optional[str] = typer.Option(None, "--history", help="comma-separated item ids, oldest first"),
              text: Optional[str] = typer.Option(None, "--text", "-t", help="a shopper's statement of interests"),
              k: Optional[int] = typer.Option(None, "--k", help="list length (default serving.top_k)"),
              exclude: Optional[str] = typer.Option(None, "--exclude", help="comma-separated item ids never to show"),
              policy: Optional[str] = typer.Option(None, "--policy", help="greedy, epsilon_greedy, softmax or thompson (thompson: its score prior only here, no served feedback) (default serving.policy)"),
              tag: Optional[str] = typer.Option(None, "--tag", help="registered model version (default: production, else the latest)"),
              bundle: Optional[Path] = typer.Option(None, "--bundle", help="a bundle folder instead of the registry"),
              params: Optional[Path] = ParamsOpt) -> None:
    """Recommend for one shopper with the served recommender: by shopper id, by recent items, by
    a text, or (none of them) the diverse popular default."""
    from components.serving.recommender import load_recommender

    def ids(text_list: Optional[str]) -> list[str]:
        return [i.strip() for i in text_list.split(",") if i.strip()] if text_list else []

    recommender = load_recommender(_params(params), tag, bundle)
    table = recommender.recommend(user=user, items=ids(history), text=text, k=k, exclude=ids(exclude), policy=policy)
    typer.echo(table.to_string(index=False))


@app.command()
def promote(tag: Optional[str] = typer.Argument(None, help="the version to put in production: name:version, or the version alone"),
            rollback: bool = typer.Option(False, "--rollback", help="restore the version the last promotion replaced"),
            params: Optional[Path] = ParamsOpt) -> None:
    """Put a registered version in production (label stage=production; one at a time), or roll back.

    The version it replaces becomes a candidate again; every promotion is recorded beside the store.
    `bentoml models list` shows the labels."""
    from components.registry.promotion import promote as run, rollback as undo
    if rollback == (tag is not None):
        raise InterestError("give either a TAG to promote or --rollback")
    p = _params(params)
    _echo_json(undo(p) if rollback else run(p, tag))


@app.command("monitor-feedback")
def monitor_feedback(accept: bool = typer.Option(True, "--accept/--no-accept",
                                                 help="write the pending feedback as a new data version when the pass decides to retrain"),
                     params: Optional[Path] = ParamsOpt) -> None:
    """Check the feedback stored since the last pass, measure it, and decide on retraining.

    Events failing the feedback suite (expectations/feedback.json: unknown items or event kinds,
    a bot flood, ...) are quarantined with the expectation they failed; the rest are kept under
    monitor.out_dir. CTR, cart and purchase rates, coverage, the share of new products shown and
    NDCG@k against the next action, per model version, arm and policy, go to
    monitor.metrics_file and monitor.plot_file; Evidently drift and data-quality reports to
    monitor.drift_dir (index.html). When a view in monitor.retrain.drift_views drifts or the online
    metric drops (monitor.retrain.*), the accepted feedback is written to ingest.feedback_dir: a new
    data version, which `dvc repro` (or the interest_training DAG) then trains on."""
    from components.monitoring.monitor import monitor_and_accept

    _echo_json(monitor_and_accept(_params(params), accept).summary())


@app.command()
def simulate(url: str = typer.Option("http://localhost:3000", "--url", help="the running service"),
             shoppers: Optional[int] = typer.Option(None, "--shoppers", help="how many (default simulate.shoppers; 0 = all)"),
             surge: Optional[str] = typer.Option(None, "--surge", help="a shift: shown items matching this phrase (title, "
                                                  "categories) are clicked with simulate.surge_click; `auto` picks one "
                                                  "(default simulate.surge_category; '' = none)"),
             new_products: Optional[int] = typer.Option(None, "--new-products", help="a shift: add this many products of "
                                                         "the data the service does not know first (default simulate.new_products)"),
             params: Optional[Path] = ParamsOpt) -> None:
    """Held-out shoppers of the data as traffic against the running service.

    Each asks `recommend` by its shop id, is shown the slate (impressions), clicks the item it
    really engaged with next when the slate shows it (and may buy it), rarely anything else; the
    events go back through `feedback` with the service token ($INTEREST_SERVICE_TOKEN, else
    serving.token_file). Shifts (--surge, --new-products) make drift appear. Prints impressions,
    clicks, purchases, CTR, the hit rate and the shift."""
    from components.serving.auth import service_token
    from components.benches.simulate import simulate as run

    p = _params(params)
    _echo_json(run(p, url, service_token(p.path(p.serving.token_file)), shoppers, surge, new_products))


@app.command("ab-report")
def ab_report(params: Optional[Path] = ParamsOpt) -> None:
    """Compare the A/B arms in the feedback store: CTR and conversion per arm with intervals, a
    two-proportion z test of each arm against the first, the minimum detectable effect for the
    traffic seen, and a warning when it is too early to call (ab.*). Writes ab.metrics_file and
    the HTML report ab.report_file."""
    from components.analysis.ab_arms import ab_report as run

    summary = run(_params(params))
    _echo_json({"comparisons": summary["comparisons"], "report": summary["report"]})


@app.command()
def ope(params: Optional[Path] = ParamsOpt) -> None:
    """Check the off-policy estimators (IPS, SNIPS, DM, DR) where the truth is known: on each Open
    Bandit campaign (ope.campaigns), Thompson sampling's CTR estimated from the uniform-random logs
    against its own logged CTR, with bootstrap intervals. Writes ope.metrics_file (metrics/ope.json)."""
    from components.analysis.ope import ope_check

    result = ope_check(_params(params))
    for campaign, figures in result["campaigns"].items():
        typer.echo(f"{campaign}: Thompson sampling's CTR {figures['bts_ctr']:.5f} ({figures['bts_rounds']} rounds); "
                   f"estimated from {figures['rounds']} uniform-random rounds:")
        for name, e in figures["estimators"].items():
            typer.echo(f"  {name:<6} {e['value']:.5f}  [{e['interval'][0]:.5f}, {e['interval'][1]:.5f}]  "
                       f"relative error {e['relative_error']:.1%}  truth in interval: {e['truth_in_interval']}")


@app.command("forget-user")
def forget_user(user: str = typer.Argument(..., help="the shop's own id of the shopper (or the pseudonym with --pseudonym)"),
                is_pseudonym: bool = typer.Option(False, "--pseudonym", help="USER is already the pseudonym"),
                params: Optional[Path] = ParamsOpt) -> None:
    """Erase a shopper from every store: their events and served slates from the feedback store,
    their rows from every data version, monitoring window and segment assignment, and register
    the erasure (privacy.erasure_dir) so the next data version, and every model trained on it,
    leaves them out. Prints the register entry: the pseudonym and the rows removed where."""
    from components.privacy.forget import forget_user as forget

    _echo_json(forget(_params(params), shopper=user) if is_pseudonym else forget(_params(params), shop_id=user))


@app.command("demo-loop")
def demo_loop(params: Optional[Path] = ParamsOpt) -> None:
    """The closed loop's story on a sample (demo.*), in a fresh demo.dir: train and promote ->
    serve -> simulated shoppers -> monitoring -> a shift (new products, a surge) -> drift found ->
    the accepted feedback becomes a new data version -> retrain -> gate -> the service swaps ->
    the same shoppers again. Prints each step with its figures and time, the wall time and where
    the reports are."""
    from components.benches.demo_loop import demo_loop as run

    typer.echo(run(_params(params)).text())


@app.command("params-for")
def params_for(out_dir: Path = typer.Argument(..., help="folder the copy and all its outputs go to"),
               dataset: Optional[str] = typer.Option(None, "--dataset", help="data.dataset of the copy, e.g. Scientific"),
               sample_users: Optional[int] = typer.Option(None, "--sample-users", help="data.sample_users of the copy"),
               assignments: Optional[list[str]] = typer.Option(
                   None, "--set", "-S", help="section.key=value for the copy (repeatable), e.g. split.cold_item_fraction=0"),
               params: Optional[Path] = ParamsOpt) -> None:
    """Write a params.yaml copy into OUT_DIR whose outputs land there: run another dataset, a
    sample or a setting beside the project's own outputs (then `interest run --params
    OUT_DIR/params.yaml`)."""
    from components.core.config.loader import default_params_path, derive_params
    from components.core.config.overrides import assignment_overrides, merge_overrides
    overrides = assignment_overrides(assignments or [])
    data = {k: v for k, v in (("dataset", dataset), ("sample_users", sample_users)) if v is not None}
    merge_overrides(overrides, {"data": data} if data else {})
    typer.echo(derive_params(params or default_params_path(), out_dir, overrides))


@app.command("bench-quality")
def bench_quality(params: Optional[Path] = ParamsOpt) -> None:
    """Print our test figures next to the published Beauty results (same protocol, R@10 / N@10)."""
    from components.evaluation.benchmark import quality_report
    typer.echo(quality_report(_params(params)))


@app.command()
def serve(port: Optional[int] = typer.Option(None, "--port", help="the service's port (default serving.port)"),
          params: Optional[Path] = ParamsOpt) -> None:
    """Serve the registered recommender until interrupted: one `bentoml serve` process when
    serving.workers is 1; else that many workers forked from one process that loaded the model
    (so they share its memory), behind HAProxy (least connections, /readyz checks), sharing a
    PostgreSQL feedback store; a dead worker is forked again."""
    from components.deployment.serve import serve as run
    run(_params(params), port)


@app.command("store-up")
def store_up(params: Optional[Path] = ParamsOpt) -> None:
    """Start the S3 object store DVC's remote lives on (SeaweedFS, on object_store.s3_port, data in
    object_store.dir) and give this repository's remote its endpoint and keys in .dvc/config.local:
    then `dvc push` / `dvc pull`. Keys: $AWS_ACCESS_KEY_ID / $AWS_SECRET_ACCESS_KEY, else made once."""
    from components.core.config.loader import default_params_path
    from components.deployment.object_store import point_dvc_at, start_object_store
    p = _params(params)
    store = start_object_store(p.object_store, p.path(p.object_store.dir))
    point_dvc_at(store, (params or default_params_path()).resolve().parent, p.object_store.dvc_remote)
    typer.echo(f"S3 store on {store.endpoint}, bucket {store.bucket}; DVC remote '{p.object_store.dvc_remote}' "
               "points at it (.dvc/config.local). Stop it with `make store-down`.")


@app.command("store-down")
def store_down(params: Optional[Path] = ParamsOpt) -> None:
    """Stop the object store `interest store-up` started (its data stays in object_store.dir)."""
    from components.deployment.object_store import stop_object_store
    p = _params(params)
    typer.echo("stopped" if stop_object_store(p.path(p.object_store.dir)) else "no store was running")


@app.command("airflow-cluster")
def airflow_cluster(workers: int = typer.Option(1, "--workers", min=1, help="Celery workers to start"),
                    params: Optional[Path] = ParamsOpt) -> None:
    """Start Airflow on PostgreSQL with Redis and Celery workers on this machine (in airflow_cluster.dir):
    the API server and UI on airflow_cluster.api_port, scheduler, DAG processor, triggerer, workers,
    each with its own log. The DAGs read PARAMS. Stop it with `interest airflow-cluster-stop`."""
    from components.core.config.loader import default_params_path
    from components.deployment.airflow_cluster import start_airflow_cluster
    p = _params(params)
    project = (params or default_params_path()).resolve().parent
    cluster = start_airflow_cluster(p.airflow_cluster, p.path(p.airflow_cluster.dir), project,
                                    Path(__file__).resolve().parents[1] / "dags", workers=workers)
    home = cluster.env["AIRFLOW_HOME"]
    typer.echo(f"Airflow on {cluster.url} (user admin, password in {home}/simple_auth_manager_passwords.json.generated)\n"
               f"logs: {cluster.root / 'logs'}; the airflow CLI of another shell: source {cluster.root / 'env.sh'}")


@app.command("airflow-cluster-stop")
def airflow_cluster_stop(params: Optional[Path] = ParamsOpt) -> None:
    """Stop exactly the processes `interest airflow-cluster` started (workers first), then its PostgreSQL."""
    from components.deployment.airflow_cluster import stop_airflow_cluster
    p = _params(params)
    stopped = stop_airflow_cluster(p.path(p.airflow_cluster.dir))
    typer.echo(f"stopped {', '.join(stopped)}" if stopped else "no cluster was running")


@app.command("bench-train-scale")
def bench_train_scale(params: Optional[Path] = ParamsOpt) -> None:
    """Train on PARAMS' split as one process and as torchrun agents (benchmark.train_scale_processes,
    each seed of benchmark.train_scale_seeds; runs in benchmark.train_scale_dir): wall time,
    valid NDCG@10, identical ranks. Run `interest run --to embed` on PARAMS first. Writes
    benchmark.train_scale_metrics_file."""
    from components.benches.train_scale import bench_train_scale as bench, train_scale_table
    from components.core.config.loader import default_params_path
    typer.echo(train_scale_table(bench(_params(params), params or default_params_path())))


@app.command("bench-seeds")
def bench_seeds(params: Optional[Path] = ParamsOpt) -> None:
    """Train and evaluate PARAMS' setting once more per other seed of benchmark.seeds (train.seed
    and coldstart.seed; each in benchmark.seeds_dir/<seed>), then print every figure as mean ± sd
    over the seeds, PARAMS' own run included (run it first). Writes benchmark.seeds_metrics_file."""
    from components.core.config.loader import default_params_path, load_params
    from components.benches.seeds import seed_runs, seeds_summary, seeds_table
    p = _params(params)
    runs = seed_runs(p, params or default_params_path())
    for run in runs[1:]:
        typer.secho(f"seed {run.seed}: {run.params_file}", bold=True)
        for step in select_steps(to="evaluate"):
            run_step(step.name, load_params(run.params_file))
    typer.echo(seeds_table(seeds_summary(p, runs)))


@app.command("bench-serve")
def bench_serve(params: Optional[Path] = ParamsOpt) -> None:
    """Start the service on localhost as `interest serve` does, for each of benchmark.serve_workers
    (workers behind HAProxy, a PostgreSQL store), and measure it with k6 at a constant arrival
    rate: recommend, the page-view mix and feedback at benchmark.serve_rate, recommend at rising
    rates, the workers' peak memory, every test case replayed over HTTP against the evaluation's
    NDCG@10, and the floor (an app that answers at once). Writes benchmark.serve_metrics_file."""
    from components.benches.serve_load import bench_serve as run, serving_table
    typer.echo(serving_table(run(_params(params))))


@app.command("bench-consistency")
def bench_consistency(params: Optional[Path] = ParamsOpt) -> None:
    """Sweep serving.personalisation on the valid cases: NDCG@10 against slate stability and
    coverage. Writes benchmark.consistency_metrics_file and the plot benchmark.consistency_plot."""
    from components.benches.consistency_sweep import bench_consistency as run, consistency_table
    typer.echo(consistency_table(run(_params(params))))


@app.command("bench-peers")
def bench_peers(params: Optional[Path] = ParamsOpt) -> None:
    """Train RecBole's peers (benchmark.peers.models) on this split, cores and wall clock, and print
    their test figures (masked) next to ours and the published ones. Needs the peers' virtualenv
    (`make bench-peers` installs it) and our model evaluated on the same split, in the published
    setting (split.cold_item_fraction 0). Writes benchmark.peers.metrics_file and benchmark.peers.plot."""
    from components.benches.peers import bench_peers as run, peers_table
    typer.echo(peers_table(run(_params(params))))


def main() -> None:
    try:
        app()
    except InterestError as exc:
        typer.secho(f"error: {exc}", err=True, fg=typer.colors.RED)
        sys.exit(2)


if __name__ == "__main__":
    main()
