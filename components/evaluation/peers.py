"""`make bench-peers`: published sequential recommenders run here, beside ours, on the same split,
the same cores and the same wall-clock budget.

RecBole (installed in its own virtualenv by `make bench-peers`, benchmarks/peers/) trains each
model of benchmark.peers.models from the same shopper sequences our split holds: RecBole's
leave-one-out by time gives the same valid and test items, and its full ranking removes history
items, as our masked protocol does. Each peer gets the seconds our training took (or
benchmark.peers.budget_seconds), our patience, seed, batch size and sequence length; its
figures sit next to ours and the published rows, and one plot shows valid NDCG@10 against
wall-clock seconds for all. Peers have no item text, so this runs in the published setting (no
cold-item hold-out).
"""
from __future__ import annotations

import logging
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import yaml
from matplotlib.figure import Figure

from components.core.config import Params
from components.core.errors import ConfigError, InterestError
from components.core.io import read_json, write_json
from components.data.split import CASE_SPLITS, Split, load_split
from components.evaluation.benchmark import published_for

log = logging.getLogger(__name__)

K = 10
PROTOCOL = "masked"   # RecBole's full ranking leaves history items out
OURS = ("interest_model", "fusion")   # the model alone and the served recommender
TEST = CASE_SPLITS[-1]


def shopper_sequences(split: Split) -> pd.DataFrame:
    """user, item, timestamp (the position in the shopper's sequence): every interaction, so that
    leave-one-out by time gives back exactly the split's valid and test items."""
    if split.item_index["is_cold"].any():
        raise ConfigError("bench-peers compares models without item text, in the published setting: set "
                          "split.cold_item_fraction to 0 (make bench-peers runs in its own folder with that setting)")
    ids = split.item_index.set_index("item_idx")["item"]
    test = split.cases[split.cases["split"] == TEST]
    sequences = [list(history) + [target] for history, target in zip(test["history"], test["target"])]
    users = np.repeat(test["user"].to_numpy(), [len(s) for s in sequences])
    items = ids.reindex(np.concatenate(sequences)).to_numpy()
    positions = np.concatenate([np.arange(len(s)) for s in sequences])
    return pd.DataFrame({"user_id": users, "item_id": items, "timestamp": positions})


def write_atomic(sequences: pd.DataFrame, folder: Path, name: str) -> Path:
    """RecBole's atomic interaction file <folder>/<name>/<name>.inter."""
    path = folder / name / f"{name}.inter"
    path.parent.mkdir(parents=True, exist_ok=True)
    header = "user_id:token\titem_id:token\ttimestamp:float\n"
    path.write_text(header + sequences.to_csv(sep="\t", header=False, index=False))
    return path


def recbole_settings(params: Params, model: str, out: Path) -> dict:
    """The shared settings, the model's own, and what must equal ours (seed, batch, length)."""
    cfg = params.benchmark.peers
    return {"USER_ID_FIELD": "user_id", "ITEM_ID_FIELD": "item_id", "TIME_FIELD": "timestamp",
            "load_col": {"inter": ["user_id", "item_id", "timestamp"]},
            "eval_args": {"split": {"LS": "valid_and_test"}, "order": "TO", "mode": "full", "group_by": "user"},
            "metrics": ["Recall", "NDCG"], "topk": [K], "valid_metric": f"NDCG@{K}",
            "train_neg_sample_args": None, "checkpoint_dir": str(out / "saved"), "show_progress": False,
            **cfg.recbole, **cfg.models[model],
            "seed": params.train.seed, "train_batch_size": params.train.batch_size,
            "MAX_ITEM_LIST_LENGTH": params.model.max_len}


def budget_seconds(params: Params) -> float:
    cfg = params.benchmark.peers
    if cfg.budget_seconds:
        return cfg.budget_seconds
    train_file = params.path(params.train.metrics_file)
    if not train_file.is_file():
        raise InterestError(f"no {train_file}: train our model first (`interest run --to evaluate`), or set "
                            "benchmark.peers.budget_seconds")
    summary = read_json(train_file)      # our training: its epochs, and the final pass with the valid items
    return float(summary["train_seconds"] + summary.get("final_pass_seconds", 0.0))


def run_peer(params: Params, model: str, data_dir: Path, name: str, seconds: float) -> dict:
    """One peer trained and tested by RecBole in the peers' virtualenv; its figures."""
    cfg = params.benchmark.peers
    python, runner = params.path(cfg.python), params.path(cfg.runner)
    if not python.is_file():
        raise InterestError(f"no peers' virtualenv at {python}: run `make bench-peers` (it installs RecBole there)")
    out = params.path(cfg.dir) / model
    out.mkdir(parents=True, exist_ok=True)
    settings = out / "recbole.yaml"
    settings.write_text(yaml.safe_dump(recbole_settings(params, model, out), sort_keys=False))
    figures_file = out / "figures.json"
    figures_file.unlink(missing_ok=True)
    command = [str(python), str(runner), "--model", model, "--dataset", name, "--data-dir", str(data_dir),
               "--config", str(settings), "--seconds", f"{seconds:.1f}", "--patience", str(params.train.patience),
               "--out", str(figures_file)]
    log.info("peer %s: %.0f s budget (log: %s)", model, seconds, out / "run.log")
    with open(out / "run.log", "w") as log_file:
        done = subprocess.run(command, cwd=out, stdout=log_file, stderr=subprocess.STDOUT, check=False)
    if done.returncode != 0 or not figures_file.is_file():
        tail = (out / "run.log").read_text()[-2000:]
        raise InterestError(f"peer {model} failed (exit {done.returncode}); the end of {out / 'run.log'}:\n{tail}")
    return read_json(figures_file)


def our_curve(params: Params) -> list[dict]:
    """Our valid NDCG@10 per epoch under the peers' (masked) protocol."""
    history = read_json(params.path(params.train.history_file))
    return [{"elapsed_seconds": r["elapsed_seconds"], f"valid_ndcg@{K}": r[f"valid_{PROTOCOL}_ndcg@{K}"]}
            for r in history if "elapsed_seconds" in r]


def bench_peers(params: Params) -> dict:
    """Every peer run, our figures and the published ones: benchmark.peers.metrics_file and plot."""
    cfg = params.benchmark.peers
    ranking_file = params.path(params.evaluate.metrics_file)
    if not ranking_file.is_file():
        raise InterestError(f"no {ranking_file}: evaluate our model on this split first (`interest run --to evaluate`)")
    ours = read_json(ranking_file)[PROTOCOL][TEST]
    name = params.data.dataset
    data_dir = params.path(cfg.dir) / "data"
    write_atomic(shopper_sequences(load_split(params)), data_dir, name)
    seconds = budget_seconds(params)
    peers = {model: run_peer(params, model, data_dir, name, seconds) for model in cfg.models}
    published = [r for r in published_for(params)[1]["results"] if r["protocol"] == PROTOCOL]
    figures = {
        "dataset": name, "protocol": PROTOCOL, "budget_seconds": round(seconds, 1),
        "ours": {model: {f"recall@{K}": ours[model][f"recall@{K}"], f"ndcg@{K}": ours[model][f"ndcg@{K}"]}
                 for model in OURS},
        "peers": {model: {**p["test"], "train_seconds": round(p["train_seconds"], 1), "epochs": len(p["curve"]),
                          "best_epoch": p["best_epoch"], "stopped_because": p["stopped_because"]}
                  for model, p in peers.items()},
        "published": {r["model"]: {f"recall@{K}": r[f"recall@{K}"], f"ndcg@{K}": r[f"ndcg@{K}"]} for r in published},
    }
    write_json(figures, params.path(cfg.metrics_file))
    curves = {"interest model (ours)": our_curve(params),
              **{f"{model} (RecBole)": p["curve"] for model, p in peers.items()}}
    plot_curves(curves, seconds, params.path(cfg.plot))
    return figures


def plot_curves(curves: dict[str, list[dict]], budget: float, path: Path) -> None:
    fig = Figure(figsize=(8, 5))
    ax = fig.subplots()
    for label, curve in curves.items():
        ax.plot([r["elapsed_seconds"] for r in curve], [r[f"valid_ndcg@{K}"] for r in curve], marker="o",
                markersize=3, label=label)
    ax.axvline(budget, color="grey", linestyle="--", linewidth=1, label="budget")
    ax.set_xlabel("wall-clock seconds (training and validation)")
    ax.set_ylabel(f"valid NDCG@{K}")
    ax.set_title("Valid NDCG@10 against wall-clock time, same split and cores")
    ax.grid(alpha=0.3)
    ax.legend()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120, bbox_inches="tight")


def peers_table(figures: dict) -> str:
    """Ours, the peers measured here and the published rows, best NDCG first."""
    rows = [("ours", m, f) for m, f in figures["ours"].items()]
    rows += [("peer here", m, f) for m, f in figures["peers"].items()]
    rows += [("published", m, f) for m, f in figures["published"].items()]
    rows.sort(key=lambda r: -r[2][f"ndcg@{K}"])
    width = max(len(m) for _, m, _ in rows)
    lines = [f"{figures['dataset']}, test, protocol {figures['protocol']}; peers trained for up to "
             f"{figures['budget_seconds']:.0f} s each (our training's wall time)",
             f"{'':<9}  {'model':<{width}}  {f'R@{K}':>6}  {f'N@{K}':>6}  notes"]
    for kind, model, f in rows:
        note = (f"{f['epochs']} epochs in {f['train_seconds']:.0f} s, best {f['best_epoch']}, stopped: {f['stopped_because']}"
                if kind == "peer here" else "")
        lines.append(f"{kind:<9}  {model:<{width}}  {f[f'recall@{K}']:>6.4f}  {f[f'ndcg@{K}']:>6.4f}  {note}")
    return "\n".join(lines)
