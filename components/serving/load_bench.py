"""`make bench-serve`: the service measured as the shop would meet it, on this machine.

It starts the service on localhost (the registered recommender, its own feedback store), then
1. replays the test cases over HTTP and compares their NDCG@10 with the evaluation's (offline = online),
2. holds `recommend` by shop id at benchmark.serve_rate requests/s for serve_seconds (locust,
   headless), then steps the rate up until p99 passes serve_p99_limit_ms,
3. does the same for `feedback`,
sampling the server's memory throughout; then, with adaptive batching on (serving.batch_max > 1),
restarts the service without it and holds `recommend` at the target rate again, to compare.
Last, the same locust load at the target rate against an app that does nothing (benchmarks/
floor_app.py): the latency this machine and the load generator add by themselves.
Figures go to benchmark.serve_metrics_file.
"""
from __future__ import annotations

import csv
import logging
import os
import secrets
import subprocess
import threading
import time
from pathlib import Path

from components.core.config import Params
from components.core.io import write_json
from components.data.ingest import shop_ids
from components.data.split import load_split
from components.evaluation.metrics import HEADLINE_PROTOCOL, HEADLINE_SUBSET, case_metrics
from components.evaluation.ranking import rank_cases
from components.registry.store import registered
from components.serving.local_server import BIN, PROJECT_DIR, LocalServer, free_port, start_server, wait_ready
from components.serving.recommender import load_recommender
from components.serving.replay import replay

log = logging.getLogger(__name__)
LOCUSTFILE = PROJECT_DIR / "benchmarks" / "locustfile.py"
REPLAY_K = 10
MEMORY_SAMPLE_SECONDS = 0.5
SETTLE_SECONDS = 10   # after a run, for the server to drain what an overload left queued
FLOOR_STARTUP_SECONDS = 30


def _offline_equals_online(params: Params, url: str) -> dict:
    split = load_split(params)
    test = split.cases[split.cases["split"] == HEADLINE_SUBSET]
    n = params.benchmark.serve_replay_cases or len(test)
    test, as_ids = test.head(n), split.cases_as_ids(HEADLINE_SUBSET).head(n)
    online = replay(url, list(as_ids["history"]), list(as_ids["target"]), REPLAY_K)
    key = f"ndcg@{REPLAY_K}"
    if n == len(split.cases[split.cases["split"] == HEADLINE_SUBSET]):
        offline = registered(params)[1]["test_metrics"][key]    # the evaluation's own figure
    else:   # a subset: the evaluation's scoring of the same cases, in process
        ranked = rank_cases(load_recommender(params), list(test["history"]), test["target"].to_numpy(), params.evaluate)
        offline = float(case_metrics(ranked[HEADLINE_PROTOCOL].ranks, [REPLAY_K])[key].mean())
    return {"cases": int(n), f"{key}_http": round(float(online.mean()), 6), f"{key}_evaluation": round(offline, 6),
            "abs_diff": round(abs(float(online.mean()) - offline), 6)}


def _locust(url: str, endpoint: str, rate: int, seconds: int, out: Path, env: dict[str, str], label: str = "") -> dict:
    """One headless locust run at `rate` clients x 1 request/s; its aggregated figures."""
    prefix = out / f"locust_{label}{endpoint}_{rate}"
    subprocess.run([str(BIN / "locust"), "-f", str(LOCUSTFILE), "--headless", "-u", str(rate), "-r", str(rate),
                    "-t", f"{seconds}s", "--host", url, "--csv", str(prefix), "--only-summary", "--stop-timeout", "5"],
                   env={**env, "INTEREST_BENCH_ENDPOINT": endpoint}, cwd=PROJECT_DIR, capture_output=True, text=True)
    with open(f"{prefix}_stats.csv") as fh:
        row = next(r for r in csv.DictReader(fh) if r["Name"] == "Aggregated")
    figures = {"rate": rate, "seconds": seconds, "requests": int(row["Request Count"]),
               "failures": int(row["Failure Count"]), "achieved_rps": round(float(row["Requests/s"]), 1),
               "p50_ms": float(row["50%"]), "p99_ms": float(row["99%"])}
    log.info("%s at %d/s: %s", endpoint, rate, figures)
    return figures


def _measure(url: str, endpoint: str, params: Params, out: Path, env: dict[str, str]) -> dict:
    """Rising rates first, until one misses the p99 limit, then the target rate: an overloaded
    run leaves a backlog that would bill the next run for its queue."""
    cfg = params.benchmark
    steps, best = [], None
    for rate in cfg.serve_step_rates:
        step = _locust(url, endpoint, rate, cfg.serve_step_seconds, out, env)
        steps.append(step)
        if step["failures"] or step["p99_ms"] > cfg.serve_p99_limit_ms or step["achieved_rps"] < 0.95 * rate:
            break
        best = rate
    time.sleep(SETTLE_SECONDS)
    target = _locust(url, endpoint, cfg.serve_rate, cfg.serve_seconds, out, env)
    time.sleep(SETTLE_SECONDS)
    return {"at_target": target, "steps": steps, f"max_rate_p99_under_{cfg.serve_p99_limit_ms:g}ms": best}


class _PeakMemory:
    def __init__(self, server: LocalServer):
        self.server, self.peak, self._stop = server, 0, threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        while not self._stop.wait(MEMORY_SAMPLE_SECONDS):
            self.peak = max(self.peak, self.server.rss_bytes())

    def __enter__(self) -> "_PeakMemory":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()


def bench_serve(params: Params) -> dict:
    cfg = params.benchmark
    out = params.path(cfg.serve_dir)
    out.mkdir(parents=True, exist_ok=True)
    recommender = load_recommender(params)
    known = set(recommender.bundle.histories()["user"])
    (out / "shop_ids.txt").write_text("\n".join(shop_ids(params, known)))
    (out / "item_ids.txt").write_text("\n".join(recommender.catalogue["item"]))
    token = secrets.token_urlsafe(24)
    for stale in out.glob("feedback.db*"):
        stale.unlink()
    env = {**os.environ, "INTEREST_PARAMS": str(params.root / "params.yaml"), "INTEREST_SERVICE_TOKEN": token,
           "INTEREST__SERVING__STORE_URL": f"sqlite:///{out / 'feedback.db'}",
           "INTEREST__SERVING__ADDED_ITEMS_DIR": str(out / "added_items"),   # the bundle's catalogue only
           "INTEREST_BENCH_USERS_FILE": str(out / "shop_ids.txt"), "INTEREST_BENCH_ITEMS_FILE": str(out / "item_ids.txt"),
           "BENTOML_DO_NOT_TRACK": "True"}
    server = start_server(env, out / "server.log", cfg.serve_startup_seconds)
    try:
        with _PeakMemory(server) as memory:
            figures = {"model_tag": recommender.tag, "catalogue_items": recommender.n_items,
                       "known_shoppers": recommender.n_shoppers, "cpu_cores": os.cpu_count(),
                       "batch_max": params.serving.batch_max, "batch_wait_ms": params.serving.batch_wait_ms,
                       "replay": _offline_equals_online(params, server.url),
                       "recommend": _measure(server.url, "recommend", params, out, env),
                       "feedback": _measure(server.url, "feedback", params, out, env)}
        figures["server_peak_rss_mb"] = round(memory.peak / 2 ** 20, 1)
    finally:
        server.stop()
    if params.serving.batch_max > 1:
        unbatched = {**env, "INTEREST__SERVING__BATCH_MAX": "1"}
        server = start_server(unbatched, out / "server_unbatched.log", cfg.serve_startup_seconds)
        try:
            figures["recommend_unbatched"] = {"at_target": _locust(server.url, "recommend", cfg.serve_rate,
                                                                   cfg.serve_seconds, out, unbatched, "unbatched_")}
        finally:
            server.stop()
    figures["harness_floor"] = {"at_target": _floor(cfg.serve_rate, cfg.serve_seconds, out, env)}
    write_json(figures, params.path(cfg.serve_metrics_file))
    return figures


def _floor(rate: int, seconds: int, out: Path, env: dict[str, str]) -> dict:
    """locust at `rate` against benchmarks/floor_app.py (uvicorn, one worker, as the service)."""
    port = free_port()
    with open(out / "floor.log", "a") as log_file:
        proc = subprocess.Popen([str(BIN / "uvicorn"), "--app-dir", str(LOCUSTFILE.parent), "floor_app:app",
                                 "--host", "127.0.0.1", "--port", str(port), "--log-level", "warning"],
                                stdout=log_file, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_ready(url + "/", proc, FLOOR_STARTUP_SECONDS, out / "floor.log")
        return _locust(url, "recommend", rate, seconds, out, env, "floor_")
    finally:
        proc.terminate()
        proc.wait()


def serving_table(figures: dict) -> str:
    """The bench's figures as the table `interest bench-serve` prints."""
    best_key = next(k for k in figures["recommend"] if k.startswith("max_rate"))
    lines = [f"model {figures['model_tag']} ({figures['catalogue_items']} items, {figures['known_shoppers']} shoppers, "
             f"{figures['cpu_cores']} cores)",
             f"{'endpoint':<10} {'rate/s':>7} {'achieved':>9} {'requests':>9} {'failures':>9} {'p50 ms':>8} {'p99 ms':>8}"]
    for endpoint in ("recommend", "feedback"):
        for run in [figures[endpoint]["at_target"], *figures[endpoint]["steps"]]:
            lines.append(f"{endpoint:<10} {run['rate']:>7} {run['achieved_rps']:>9} {run['requests']:>9} "
                         f"{run['failures']:>9} {run['p50_ms']:>8.0f} {run['p99_ms']:>8.0f}")
        lines.append(f"{endpoint:<10} highest rate with {best_key.removeprefix('max_rate_')}: "
                     f"{figures[endpoint][best_key]}")
    if "recommend_unbatched" in figures:
        run = figures["recommend_unbatched"]["at_target"]
        lines.append(f"{'unbatched':<10} {run['rate']:>7} {run['achieved_rps']:>9} {run['requests']:>9} "
                     f"{run['failures']:>9} {run['p50_ms']:>8.0f} {run['p99_ms']:>8.0f}   (recommend, batch_max 1)")
    if "harness_floor" in figures:
        run = figures["harness_floor"]["at_target"]
        lines.append(f"{'floor':<10} {run['rate']:>7} {run['achieved_rps']:>9} {run['requests']:>9} "
                     f"{run['failures']:>9} {run['p50_ms']:>8.0f} {run['p99_ms']:>8.0f}   (an app that does nothing: "
                     "what locust and this machine add)")
    replay_figures = figures["replay"]
    lines.append(f"offline = online: {replay_figures['cases']} test cases over HTTP, NDCG@10 "
                 f"{replay_figures['ndcg@10_http']} vs evaluation {replay_figures['ndcg@10_evaluation']} "
                 f"(|diff| {replay_figures['abs_diff']})")
    lines.append(f"server peak memory: {figures['server_peak_rss_mb']} MB")
    return "\n".join(lines)
