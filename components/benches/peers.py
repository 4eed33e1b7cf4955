"""`make bench-peers`: published sequential recommenders run here, beside ours, on the same split,
the same cores and the same wall-clock budget.

RecBole (installed in its own virtualenv by `make bench-peers`, benchmarks/peers/) trains each
model of benchmark.peers.models from the same shopper sequences our split holds: RecBole's
leave-one-out by time gives the same valid and test items. Each peer is selected on valid and
tested once, as our peers'-protocol row is (trained on the training interactions only). Its
selected model's full score row of every test case comes back here and is ranked by our own
metrics under both protocols: RecBole 1.2.1 masks no history item for sequential models (its
FullSortEvalDataLoader gives them no history), so its own figures are unmasked ones, kept beside
ours as a check. Each peer gets the seconds our selection training took (or
benchmark.peers.budget_seconds), our patience, seed, batch size and sequence length; on 2 CPU
cores that makes the comparison one of training speed as much as of quality, so the figures say
how many epochs each peer got and whether its valid curve was still rising. One plot shows
valid NDCG@10 against wall-clock seconds for all. Peers have no item text, so this runs in the
published setting (no cold-item hold-out).
"""
from __future__ import annotations

import logging
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import yaml
from matplotlib.figure import Figure

from components.core.batch_slices import batch_slices
from components.core.config.schema import Params
from components.core.errors import ConfigError, InterestError
from components.core.io import read_json, write_json
from components.data.split import CASE_SPLITS, PAD, Split, load_split
from components.evaluation.benchmark import published_for
from components.evaluation.metrics import PROTOCOLS, apply_protocol, ranking_summary, target_ranks
from components.evaluation.ranking import PROTOCOL_PEERS

log = logging.getLogger(__name__)

K = 10
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
    """benchmark.peers.budget_seconds, else the wall time of our selection training (the model
    of the peers' protocol: the final stage on the valid items is not part of it)."""
    cfg = params.benchmark.peers
    if cfg.budget_seconds:
        return cfg.budget_seconds
    train_file = params.path(params.train.metrics_file)
    if not train_file.is_file():
        raise InterestError(f"no {train_file}: train our model first (`interest run --to evaluate`), or set "
                            "benchmark.peers.budget_seconds")
    return float(read_json(train_file)["train_seconds"])


def run_peer(params: Params, model: str, data_dir: Path, name: str, seconds: float) -> dict:
    """One peer trained and tested by RecBole in the peers' virtualenv: its run's figures (its
    test score rows are in <peers dir>/<model>/scores)."""
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
               "--out", str(figures_file), "--scores", str(out / "scores")]
    log.info("peer %s: %.0f s budget (log: %s)", model, seconds, out / "run.log")
    with open(out / "run.log", "w") as log_file:
        done = subprocess.run(command, cwd=out, stdout=log_file, stderr=subprocess.STDOUT, check=False)
    if done.returncode != 0 or not figures_file.is_file():
        tail = (out / "run.log").read_text()[-2000:]
        raise InterestError(f"peer {model} failed (exit {done.returncode}); the end of {out / 'run.log'}:\n{tail}")
    return read_json(figures_file)


def rank_score_rows(scores: np.ndarray, histories: list, targets: np.ndarray, batch_size: int) -> dict[str, dict]:
    """Recall and NDCG@K of score rows [cases, n_items + 1] (column = our item_idx) under each
    protocol, by our metrics: `masked` removes each case's history items, never its target."""
    ranks: dict[str, list] = {p: [] for p in PROTOCOLS}
    for chunk in batch_slices(len(targets), batch_size):
        block = np.array(scores[chunk], dtype=np.float32)
        block[:, PAD] = -np.inf
        for protocol in PROTOCOLS:
            ranked = apply_protocol(block, histories[chunk], targets[chunk], protocol)
            ranks[protocol].append(target_ranks(ranked, targets[chunk]))
    return {p: {name: round(value, 6) for name, value in ranking_summary(np.concatenate(r), (K,)).items()
                if name in (f"recall@{K}", f"ndcg@{K}")} for p, r in ranks.items()}


def peer_test_figures(folder: Path, split: Split, batch_size: int) -> dict[str, dict]:
    """A peer's exported test scores (run_recbole.py --scores) in our item order and case
    histories, ranked by rank_score_rows; its targets must be ours, case by case."""
    cases, tokens = read_json(folder / "cases.json"), read_json(folder / "items.json")
    scores = np.load(folder / "scores.npy", mmap_mode="r")
    column = {token: c for c, token in enumerate(tokens)}
    index = split.item_index
    missing = sorted(set(index["item"]) - set(column))
    if missing:
        raise InterestError(f"{folder}: {len(missing)} catalogue items have no score column (e.g. {missing[:3]})")
    order = np.zeros(len(index) + 1, dtype=np.int64)          # our item_idx -> the peer's column (PAD -> its PAD)
    order[index["item_idx"].to_numpy()] = [column[i] for i in index["item"]]
    test = split.cases[split.cases["split"] == TEST].set_index("user")
    unknown = sorted(set(cases["user"]) - set(test.index))
    if unknown or len(cases["user"]) != len(test):
        raise InterestError(f"{folder}: its {len(cases['user'])} test cases are not the split's {len(test)} "
                            f"(e.g. unknown shoppers {unknown[:3]})")
    rows = test.loc[cases["user"]]
    ids = index.set_index("item_idx")["item"]
    wrong = int((ids.reindex(rows["target"]).to_numpy() != np.asarray(cases["target"])).sum())
    if wrong:
        raise InterestError(f"{folder}: {wrong} test targets differ from the split's: not the same leave-one-out")
    return rank_score_rows(_Columns(scores, order), list(rows["history"]), rows["target"].to_numpy(), batch_size)


class _Columns:
    """Rows of a memory-mapped score array with its columns put in our item order, read a slice at a time."""

    def __init__(self, scores: np.ndarray, order: np.ndarray):
        self.scores, self.order = scores, order

    def __getitem__(self, rows: slice) -> np.ndarray:
        return np.asarray(self.scores[rows])[:, self.order]


def our_curve(params: Params) -> list[dict]:
    """Our valid NDCG@10 per epoch, unmasked: the protocol RecBole validates the peers with."""
    history = read_json(params.path(params.train.history_file))
    return [{"elapsed_seconds": r["elapsed_seconds"], f"valid_ndcg@{K}": r[f"valid_ndcg@{K}"]}
            for r in history if "elapsed_seconds" in r]


def pick(figures: dict) -> dict[str, float]:
    return {f"recall@{K}": figures[f"recall@{K}"], f"ndcg@{K}": figures[f"ndcg@{K}"]}


def bench_peers(params: Params) -> dict:
    """Every peer run, our peers'-protocol figures and the published ones, under both protocols:
    benchmark.peers.metrics_file and plot."""
    cfg = params.benchmark.peers
    ranking_file = params.path(params.evaluate.metrics_file)
    if not ranking_file.is_file():
        raise InterestError(f"no {ranking_file}: evaluate our model on this split first (`interest run --to evaluate`)")
    ranking = read_json(ranking_file)
    if PROTOCOL_PEERS not in ranking:
        raise InterestError(f"{ranking_file} predates the peers' protocol figures: run `interest evaluate` again")
    name, split = params.data.dataset, load_split(params)
    data_dir = params.path(cfg.dir) / "data"
    write_atomic(shopper_sequences(split), data_dir, name)
    seconds = budget_seconds(params)
    peers = {model: run_peer(params, model, data_dir, name, seconds) for model in cfg.models}
    published = [] if params.data.sample_users else published_for(params)[1]["results"]   # a sample: no published setting
    figures = {
        "dataset": name, "setting": PROTOCOL_PEERS, "budget_seconds": round(seconds, 1),
        "budget": "each peer's wall clock: our selection training's (train only), same machine and cores",
        "ours": {p: {model: pick(ranking[PROTOCOL_PEERS][p][TEST][model]) for model in OURS} for p in PROTOCOLS},
        "peers": {model: {**peer_test_figures(params.path(cfg.dir) / model / "scores", split, params.evaluate.batch_size),
                          "recbole_own_unmasked": p["test"], "train_seconds": round(p["train_seconds"], 1),
                          "epochs": len(p["curve"]), "best_epoch": p["best_epoch"],
                          "still_rising": p["best_epoch"] == len(p["curve"]),
                          "stopped_because": p["stopped_because"]}
                  for model, p in peers.items()},
        "published": {p: {r["model"]: pick(r) for r in published if r["protocol"] == p} for p in PROTOCOLS},
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
    ax.set_ylabel(f"valid NDCG@{K} (unmasked)")
    ax.set_title("Valid NDCG@10 against wall-clock time, same split and cores")
    ax.grid(alpha=0.3)
    ax.legend()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120, bbox_inches="tight")


def peers_table(figures: dict) -> str:
    """Per protocol: ours (peers' protocol), the peers measured here and the published rows, best NDCG first."""
    lines = [f"{figures['dataset']}, test, {figures['setting']}; peers trained for up to {figures['budget_seconds']:.0f} s "
             "each (our selection training's wall time, same cores): at equal wall clock on CPU, a training-speed figure"]
    for protocol in PROTOCOLS:
        rows = [("ours", m, f, "") for m, f in figures["ours"][protocol].items()]
        rows += [("peer here", m, f[protocol],
                  f"{f['epochs']} epochs in {f['train_seconds']:.0f} s, best {f['best_epoch']}, stopped: "
                  f"{f['stopped_because']}{', valid still rising' if f['still_rising'] else ''}")
                 for m, f in figures["peers"].items()]
        rows += [("published", m, f, "") for m, f in figures["published"][protocol].items()]
        rows.sort(key=lambda r: -r[2][f"ndcg@{K}"])
        width = max(len(m) for _, m, _, _ in rows)
        lines += ["", f"protocol {protocol}", f"{'':<9}  {'model':<{width}}  {f'R@{K}':>6}  {f'N@{K}':>6}  notes"]
        lines += [f"{kind:<9}  {model:<{width}}  {f[f'recall@{K}']:>6.4f}  {f[f'ndcg@{K}']:>6.4f}  {note}"
                  for kind, model, f, note in rows]
    own = ", ".join(f"{m} {f['recbole_own_unmasked'][f'recall@{K}']:.4f} / {f['recbole_own_unmasked'][f'ndcg@{K}']:.4f}"
                    for m, f in figures["peers"].items())
    lines += ["", f"RecBole's own test figures (unmasked), a check on the unmasked rows: {own}"]
    return "\n".join(lines)
