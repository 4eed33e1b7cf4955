"""`make bench-train-scale`: the train step as one process against N torchrun agents (N "nodes"
on this machine, one process each), on the same split, for each seed of
benchmark.train_scale_seeds: wall time, epochs, best valid NDCG@10, and whether every rank ended
with the same parameters. With benchmark.train_scale_users, on a sample of that many shoppers
(prepared up to `embed` in benchmark.train_scale_dir/sample first), so the four runs take minutes.

The seeds give the run-to-run spread a data-parallel run's figure is judged against. On a
machine of 2 cores, two processes share the cores one process had: the wall time says what data
parallelism costs here (gradient all-reduce, two processes' overhead), not what it gains on two
machines.
"""
from __future__ import annotations

import logging
import time
from pathlib import Path

import numpy as np

from components.core.config.loader import derive_params, load_params
from components.core.config.schema import Params
from components.core.io import write_json
from components.benches.seeds import spread
from components.pipeline import run_step, select_steps

log = logging.getLogger(__name__)


def _run(params: Params, params_file: Path, processes: int, seed: int) -> dict:
    """One training run on params_file's split and embeddings, its outputs in its own folder."""
    folder = params.path(params.benchmark.train_scale_dir) / f"processes{processes}-seed{seed}"
    copy = load_params(derive_params(params_file, folder, {
        "split": {"out_dir": str(params.path(params.split.out_dir))},     # the source's inputs, not new ones
        "embed": {"out_dir": str(params.path(params.embed.out_dir))},
        "train": {"processes": processes, "seed": seed, "warm_start": False}}))   # a figure of a fresh training
    started = time.monotonic()
    summary = run_step("train", copy)
    wall = time.monotonic() - started
    run = {"processes": processes, "seed": seed, "wall_seconds": round(wall, 1), "train_seconds": summary["train_seconds"],
           "epochs_run": summary["epochs_run"], "best_epoch": summary["best_epoch"],
           "best_valid_ndcg@10": summary["best_valid_ndcg@10"],
           "ranks_identical": len(set(summary["param_digests"])) == 1 and len(summary["param_digests"]) == processes}
    log.info("%d process(es), seed %d: %s", processes, seed, run)
    return run


def bench_train_scale(params: Params, params_file: Path) -> dict:
    cfg = params.benchmark
    source = params_file
    if cfg.train_scale_users:
        source = derive_params(params_file, params.path(cfg.train_scale_dir) / "sample",
                               {"data": {"sample_users": cfg.train_scale_users}})
        for step in select_steps(to="embed"):
            run_step(step.name, load_params(source))
    data = load_params(source)
    runs = [_run(data, source, processes, seed) for processes in cfg.train_scale_processes
            for seed in cfg.train_scale_seeds]
    by_processes = {}
    for processes in cfg.train_scale_processes:
        mine = [r for r in runs if r["processes"] == processes]
        valid = spread([r["best_valid_ndcg@10"] for r in mine])
        by_processes[str(processes)] = {
            "best_valid_ndcg@10_mean": valid["mean"], "best_valid_ndcg@10_sd": valid["sd"],
            "wall_seconds_mean": round(float(np.mean([r["wall_seconds"] for r in mine])), 1),
            "seconds_per_epoch_mean": round(float(np.mean([r["train_seconds"] / r["epochs_run"] for r in mine])), 1),
            "ranks_identical": all(r["ranks_identical"] for r in mine)}
    figures = {"dataset": data.data.dataset, "sample_users": data.data.sample_users,
               "seeds": list(cfg.train_scale_seeds), "runs": runs,
               "by_processes": by_processes}
    write_json(figures, params.path(cfg.train_scale_metrics_file))
    return figures


def train_scale_table(figures: dict) -> str:
    lines = [f"{figures['dataset']} ({'sample of ' + str(figures['sample_users']) + ' shoppers' if figures['sample_users'] else 'full'}), "
             f"seeds {figures['seeds']}",
             f"{'processes':>9} {'valid NDCG@10 mean':>19} {'sd':>8} {'wall s':>8} {'s/epoch':>8} {'ranks identical':>16}"]
    for processes, row in figures["by_processes"].items():
        sd = "-" if row["best_valid_ndcg@10_sd"] is None else f"{row['best_valid_ndcg@10_sd']:.4f}"
        lines.append(f"{processes:>9} {row['best_valid_ndcg@10_mean']:>19.4f} {sd:>8} {row['wall_seconds_mean']:>8.1f} "
                     f"{row['seconds_per_epoch_mean']:>8.1f} {str(row['ranks_identical']):>16}")
    return "\n".join(lines)
