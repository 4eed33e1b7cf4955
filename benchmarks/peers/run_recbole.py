"""Train and test one RecBole model under a wall-clock budget: run by `interest bench-peers` with
the peers' own virtualenv (make bench-peers), never imported by the project.

RecBole's own data pipeline, model and trainer do the work (leave-one-out by time, full ranking,
history items removed before ranking); this script only drives the epochs so that the budget,
the patience and the best-valid choice are the project's, keeps the best weights in memory, and
records valid NDCG@10 against wall-clock seconds. Output: one JSON file (--out) and, with
--scores, the selected model's full score row of every test case, so that the project ranks
them with its own metrics under both protocols (RecBole 1.2.1 removes no history item for
sequential models: its own test figures are unmasked ones).
"""
from __future__ import annotations

import argparse
import copy
import json
import logging
import time
from pathlib import Path

log = logging.getLogger("run_recbole")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True, help="RecBole model name, e.g. SASRec or FEARec")
    parser.add_argument("--dataset", required=True, help="dataset name: the atomic file is <data-dir>/<name>/<name>.inter")
    parser.add_argument("--data-dir", required=True, type=Path)
    parser.add_argument("--config", required=True, type=Path, help="RecBole settings (YAML)")
    parser.add_argument("--seconds", required=True, type=float, help="wall-clock budget for training and validation")
    parser.add_argument("--patience", required=True, type=int, help="epochs without a better valid NDCG@10 before stopping")
    parser.add_argument("--out", required=True, type=Path)
    parser.add_argument("--scores", type=Path, help="folder for the test cases' scores: scores.npy [cases, items + 1] "
                                                  "(float32, column = RecBole's item id), cases.json (user and target "
                                                  "tokens per row), items.json (item token per column)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s", datefmt="%H:%M:%S")

    import torch
    from recbole.config import Config
    from recbole.data import create_dataset, data_preparation
    from recbole.utils import get_model, get_trainer, init_seed

    config = Config(model=args.model, dataset=args.dataset, config_file_list=[str(args.config)],
                    config_dict={"data_path": str(args.data_dir)})
    init_seed(config["seed"], config["reproducibility"])
    dataset = create_dataset(config)
    train_data, valid_data, test_data = data_preparation(config, dataset)
    init_seed(config["seed"] + config["local_rank"], config["reproducibility"])
    model = get_model(config["model"])(config, train_data._dataset).to(config["device"])
    trainer = get_trainer(config["MODEL_TYPE"], config["model"])(config, model)
    log.info("%s: %d users, %d items, %d parameters, torch threads %d", args.model, dataset.user_num,
             dataset.item_num, sum(p.numel() for p in model.parameters()), torch.get_num_threads())

    curve, best, best_state, bad, stopped = [], -1.0, None, 0, "max epochs"
    start = time.monotonic()
    for epoch in range(1, config["epochs"] + 1):
        t0 = time.monotonic()
        loss = trainer._train_epoch(train_data, epoch, show_progress=False)
        t1 = time.monotonic()
        score, result = trainer._valid_epoch(valid_data, show_progress=False)
        elapsed = time.monotonic() - start
        curve.append({"epoch": epoch, "loss": float(sum(loss) if isinstance(loss, tuple) else loss),
                      "epoch_seconds": t1 - t0, "valid_seconds": time.monotonic() - t1, "elapsed_seconds": elapsed,
                      "valid_ndcg@10": float(result["ndcg@10"]), "valid_recall@10": float(result["recall@10"])})
        log.info("%s epoch %d: valid ndcg@10 %.4f (%.0f s in all)", args.model, epoch, score, elapsed)
        if score > best:
            best, best_state, bad = score, copy.deepcopy(model.state_dict()), 0
        else:
            bad += 1
        if bad >= args.patience:
            stopped = "patience"
            break
        if elapsed >= args.seconds:
            stopped = "time budget"
            break
    train_seconds = time.monotonic() - start
    model.load_state_dict(best_state)
    test = trainer.evaluate(test_data, load_best_model=False, show_progress=False)
    figures = {"model": args.model, "curve": curve, "best_epoch": max(curve, key=lambda r: r["valid_ndcg@10"])["epoch"],
               "best_valid_ndcg@10": best, "stopped_because": stopped, "train_seconds": train_seconds,
               "budget_seconds": args.seconds, "torch_threads": torch.get_num_threads(),
               "test": {"recall@10": float(test["recall@10"]), "ndcg@10": float(test["ndcg@10"])},
               "users": int(dataset.user_num - 1), "items": int(dataset.item_num - 1)}
    if args.scores:
        export_scores(trainer, test_data, dataset, args.scores)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(figures, indent=2))
    log.info("%s test: %s", args.model, figures["test"])


def export_scores(trainer, test_data, dataset, folder: Path) -> None:
    """Every test case's full score row as RecBole's evaluation computes it (padding at -inf),
    written batch by batch into one memory-mapped array."""
    import numpy as np
    import torch

    folder.mkdir(parents=True, exist_ok=True)
    uid, iid = dataset.uid_field, dataset.iid_field
    n_cases = sum(len(batch[0]) for batch in test_data)
    scores = np.lib.format.open_memmap(folder / "scores.npy", mode="w+", dtype=np.float32,
                                       shape=(n_cases, dataset.item_num))
    users, targets, row = [], [], 0
    trainer.model.eval()
    with torch.no_grad():
        for batch in test_data:
            interaction, batch_scores, _, positive_i = trainer._full_sort_batch_eval(batch)
            scores[row:row + len(batch_scores)] = batch_scores.float().cpu().numpy()
            row += len(batch_scores)
            users += list(dataset.id2token(uid, interaction[uid].cpu().numpy()))
            targets += list(dataset.id2token(iid, positive_i.cpu().numpy()))
    scores.flush()
    (folder / "cases.json").write_text(json.dumps({"user": [str(u) for u in users], "target": [str(t) for t in targets]}))
    (folder / "items.json").write_text(json.dumps([str(t) for t in dataset.field2id_token[iid]]))
    log.info("test scores of %d cases written to %s", row, folder)


if __name__ == "__main__":
    main()
