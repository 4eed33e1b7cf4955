"""The published setting's figures over several training seeds: mean and spread.

One run's figure moves with its seed; a comparison with a published figure needs to know by how
much. `interest bench-seeds` trains and evaluates the setting once per seed of benchmark.seeds
(train.seed and coldstart.seed set to it) and this module sums the runs up: per setting (the
peers' protocol, the deployed recommender), ranking protocol and model, each seed's figure, the
mean and the sample standard deviation. Only the peers' protocol rows are set beside published ones.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from components.core.config.loader import derive_params, load_params
from components.core.config.schema import Params
from components.core.errors import InterestError
from components.core.io import read_json, write_json
from components.evaluation.benchmark import published_for
from components.evaluation.metrics import HEADLINE_SUBSET, PROTOCOLS
from components.evaluation.ranking import PROTOCOL_PEERS, SETTINGS

MODELS = ("interest_model", "fusion")   # the model alone and the served recommender
METRICS = ("recall@10", "ndcg@10")


@dataclass(frozen=True)
class SeedRun:
    seed: int
    params_file: Path   # the run's params copy: its outputs live beside it


def seed_runs(params: Params, params_file: Path) -> list[SeedRun]:
    """The params file's own run (its train.seed), then a derived copy per other seed of
    benchmark.seeds in benchmark.seeds_dir/<seed>, written now (their runs are the caller's)."""
    runs = [SeedRun(params.train.seed, params_file)]
    for seed in params.benchmark.seeds:
        if seed != params.train.seed:
            folder = params.path(params.benchmark.seeds_dir) / str(seed)
            runs.append(SeedRun(seed, derive_params(params_file, folder,
                                                    {"train": {"seed": seed, "warm_start": False},   # fresh trainings
                                                     "coldstart": {"seed": seed}})))
    return runs


def spread(values: list[float]) -> dict:
    """Each seed's value, their mean and sample standard deviation."""
    array = np.asarray(values, dtype=np.float64)
    return {"per_seed": [round(v, 6) for v in values], "mean": round(float(array.mean()), 6),
            "sd": round(float(array.std(ddof=1)), 6) if len(array) > 1 else None}


def seeds_summary(params: Params, runs: list[SeedRun]) -> dict:
    """Every run's evaluation summed up, written to benchmark.seeds_metrics_file."""
    rankings, trains = [], []
    for run in runs:
        p = load_params(run.params_file)
        ranking_file = p.path(p.evaluate.metrics_file)
        if not ranking_file.is_file():
            raise InterestError(f"seed {run.seed}: no {ranking_file}; run `interest run --to evaluate --params "
                                f"{run.params_file}` first")
        ranking = read_json(ranking_file)
        if PROTOCOL_PEERS not in ranking:
            raise InterestError(f"seed {run.seed}: {ranking_file} predates the peers' protocol figures: evaluate again")
        if ranking["cases"].get("test_cold", 0):
            raise InterestError(f"seed {run.seed}: its split holds new products out; the seeds' figures are "
                                "for the published setting (split.cold_item_fraction 0)")
        rankings.append(ranking)
        trains.append(read_json(p.path(p.train.metrics_file)))
    figures = {setting: {protocol: {model: {metric: spread([(r[PROTOCOL_PEERS] if setting == PROTOCOL_PEERS else r)
                                                             [protocol][HEADLINE_SUBSET][model][metric] for r in rankings])
                                            for metric in METRICS}
                                    for model in MODELS}
                         for protocol in PROTOCOLS}
               for setting in (PROTOCOL_PEERS, "deployed")}
    published = [] if params.data.sample_users else published_for(params)[1]["results"]   # a sample is no published setting
    summary = {
        "dataset": params.data.dataset, "subset": HEADLINE_SUBSET, "seeds": [r.seed for r in runs],
        "settings": SETTINGS, "figures": figures,
        "training": {"best_epoch": spread([t["best_epoch"] for t in trains]),
                     "train_seconds": spread([t["train_seconds"] for t in trains])},
        "published": {r["model"]: {"protocol": r["protocol"], **{m: r[m] for m in METRICS}} for r in published},
    }
    write_json(summary, params.path(params.benchmark.seeds_metrics_file))
    return summary


def seeds_table(summary: dict) -> str:
    """Per ranking protocol: the peers' protocol rows (mean ± sd) with the published rows, best
    NDCG first; then the deployed rows, apart."""
    seeds = ", ".join(map(str, summary["seeds"]))
    lines = [f"{summary['dataset']}, {summary['subset']}, published setting, seeds {seeds}: mean ± sd over the seeds"]
    for setting in (PROTOCOL_PEERS, "deployed"):
        lines += ["", f"{setting}: {summary['settings'][setting]}"]
        for protocol in PROTOCOLS:
            rows = [("ours", model, f[METRICS[0]]["mean"], f[METRICS[0]]["sd"], f[METRICS[1]]["mean"], f[METRICS[1]]["sd"])
                    for model, f in summary["figures"][setting][protocol].items()]
            if setting == PROTOCOL_PEERS:
                rows += [("published", model, r[METRICS[0]], None, r[METRICS[1]], None)
                         for model, r in summary["published"].items() if r["protocol"] == protocol]
            rows.sort(key=lambda row: -row[4])
            width = max(len(row[1]) for row in rows)
            lines += [f"protocol {protocol}", f"{'':<9}  {'model':<{width}}  {'R@10':>15}  {'N@10':>15}"]
            lines += [f"{kind:<9}  {model:<{width}}  {_mean_sd(r, r_sd):>15}  {_mean_sd(n, n_sd):>15}"
                      for kind, model, r, r_sd, n, n_sd in rows]
    epochs = summary["training"]["best_epoch"]["per_seed"]
    seconds = summary["training"]["train_seconds"]["per_seed"]
    lines += ["", f"best epochs {epochs}; training seconds {seconds} (selection only, without the final stage)"]
    return "\n".join(lines)


def _mean_sd(mean: float, sd: float | None) -> str:
    return f"{mean:.4f}" if sd is None else f"{mean:.4f} ± {sd:.4f}"
