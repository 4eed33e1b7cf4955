"""The serving benchmarks run end to end on the registered sample, briefly: `interest
bench-serve` (real workers behind HAProxy, a real PostgreSQL store, real k6) and `interest bench-consistency` write their figures."""
from __future__ import annotations

import pytest

from components.core.config.loader import load_params
from components.core.io import read_json
from components.benches.consistency_sweep import bench_consistency
from components.benches.serve_load import bench_serve, serving_table

pytestmark = pytest.mark.e2e


def short(served_sample, tmp_path, **benchmark):
    env = {f"INTEREST__BENCHMARK__{k.upper()}": str(v) for k, v in benchmark.items()}
    env |= {"INTEREST__BENCHMARK__SERVE_DIR": str(tmp_path / "bench"),
            "INTEREST__BENCHMARK__SERVE_METRICS_FILE": str(tmp_path / "serving.json"),
            "INTEREST__BENCHMARK__CONSISTENCY_METRICS_FILE": str(tmp_path / "consistency.json"),
            "INTEREST__BENCHMARK__CONSISTENCY_PLOT": str(tmp_path / "consistency.png")}
    return load_params(served_sample.root / "params.yaml", environ=env)


def test_bench_serve_replays_through_the_balancer_and_loads_one_and_two_workers(served_sample, tmp_path):
    params = short(served_sample, tmp_path, serve_rate=20, serve_seconds=4, serve_step_rates="[10, 20]",
                   serve_step_seconds=3, serve_settle_seconds=1)
    figures = bench_serve(params)
    assert read_json(tmp_path / "serving.json") == figures
    assert [by["workers"] for by in figures["by_workers"]] == [1, 2]
    replayed = figures["by_workers"][-1]["replay"]            # through the balancer, over both workers
    assert replayed["cases"] > 300 and replayed["abs_diff"] <= 0.001
    for by in figures["by_workers"]:
        for endpoint in ("recommend", "mix", "feedback"):
            run = by[endpoint]
            assert run["failures"] == 0 and run["dropped"] == 0 and run["requests"] >= 70
            assert 0 < run["p50_ms"] <= run["p99_ms"]
        feedback = by["feedback"]
        assert feedback["events_acknowledged"] >= feedback["requests"]        # 1 to 5 events a call
        assert feedback["events_stored"] == feedback["events_acknowledged"]   # every acknowledged event, once
        assert by["workers_peak_rss_mb"] > 100 and by["recommend_steps"]["steps"]
    assert figures["harness_floor"]["failures"] == 0
    assert "offline = online" in serving_table(figures)


def test_bench_consistency_trades_accuracy_for_stability(served_sample, tmp_path):
    params = short(served_sample, tmp_path, consistency_levels="[0.0, 1.0]", consistency_cases=0)
    figures = bench_consistency(params)
    assert read_json(tmp_path / "consistency.json") == figures
    none, full = figures["levels"]
    assert none["coverage@10"] < full["coverage@10"]            # popularity for everyone: few items
    assert none["slate_jaccard"] > full["slate_jaccard"]        # and the steadiest slates
    assert (tmp_path / "consistency.png").stat().st_size > 10_000
