"""bench-seeds' bookkeeping on hand-written evaluation outputs: one derived copy per other seed,
each figure's mean and sample sd, published rows beside the peers' protocol alone."""
import json
import statistics

import pytest

from components.core.config.loader import load_params
from components.core.errors import InterestError
from components.benches.seeds import seed_runs, seeds_summary, seeds_table
from tests.conftest import write_params


def _ranking(value: float, cold: int = 0) -> dict:
    figures = {p: {"test": {m: {"recall@10": value + 0.01, "ndcg@10": value} for m in ("interest_model", "fusion")}}
               for p in ("unmasked", "masked")}
    cases = {"test": 100, "test_warm": 100 - cold, **({"test_cold": cold} if cold else {})}
    return {**figures, "cases": cases, "protocol_peers": {**figures, "cases": cases}}


def _write_outputs(params_file, value: float, cold: int = 0) -> None:
    p = load_params(params_file, environ={})
    for path, content in ((p.evaluate.metrics_file, _ranking(value, cold)),
                          (p.train.metrics_file, {"best_epoch": 10, "train_seconds": 400.0 + value})):
        target = p.path(path)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(json.dumps(content))


def test_every_seed_runs_in_its_own_copy_and_the_figures_are_summed_up(tmp_path):
    params_file = write_params(tmp_path, benchmark={"seeds": [42, 7, 9]}, train={"seed": 42})
    params = load_params(params_file, environ={})
    runs = seed_runs(params, params_file)
    assert [r.seed for r in runs] == [42, 7, 9] and runs[0].params_file == params_file
    for run, value in zip(runs, (0.05, 0.06, 0.07)):
        copy = load_params(run.params_file, environ={})
        assert copy.train.seed == copy.coldstart.seed == run.seed
        _write_outputs(run.params_file, value)
    summary = seeds_summary(params, runs)
    ndcg = summary["figures"]["protocol_peers"]["masked"]["fusion"]["ndcg@10"]
    assert ndcg["per_seed"] == [0.05, 0.06, 0.07]
    assert ndcg["mean"] == pytest.approx(0.06) and ndcg["sd"] == pytest.approx(statistics.stdev([0.05, 0.06, 0.07]))
    assert json.loads(params.path(params.benchmark.seeds_metrics_file).read_text()) == summary
    peers, deployed = seeds_table(summary).split("\ndeployed:")
    assert "0.0600 ± 0.0100" in peers and "WEARec" in peers and "TIGER" in peers
    assert "0.0600 ± 0.0100" in deployed and "WEARec" not in deployed


def test_a_seed_with_new_products_held_out_is_refused(tmp_path):
    params_file = write_params(tmp_path, benchmark={"seeds": [42, 7]}, train={"seed": 42})
    params = load_params(params_file, environ={})
    runs = seed_runs(params, params_file)
    _write_outputs(runs[0].params_file, 0.05)
    _write_outputs(runs[1].params_file, 0.06, cold=5)
    with pytest.raises(InterestError, match="published setting"):
        seeds_summary(params, runs)
