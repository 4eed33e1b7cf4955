"""`interest demo-loop` (`make demo-loop`): the closed loop's whole story on a sample of the data,
in its own folder (demo.dir, made afresh), with the figure at each step.

train and promote the first model -> serve it -> simulated shoppers (held-out shoppers of the
data) use it -> a monitoring pass (the first window: measured against training, no trigger) ->
the shift: new products added and a surge of interest in one kind of product -> a monitoring pass
finds drift against the previous window -> the accepted feedback becomes a new data version ->
the pipeline retrains on it -> the gate compares the candidate with production on the newest test
cases -> the service swaps to the promoted version -> the same shoppers, still shifted, use it ->
a last pass measures the online metrics of the new version.

Each step calls the same functions as the CLI, the DVC stages and the DAGs; the same shoppers and
their targets are kept through the story, so the online figures compare like with like.
"""
from __future__ import annotations

import logging
import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import httpx

from components.core.config.loader import derive_params, load_params
from components.core.config.schema import Params
from components.core.errors import InterestError
from components.monitoring.monitor import MonitorPass, monitor, monitor_and_accept
from components.pipeline import STEPS, run_step
from components.registry.store import store_home
from components.serving.auth import service_token
from components.deployment.service_process import LocalServer, start_server
from components.benches.simulate import held_out_shoppers, simulate

log = logging.getLogger(__name__)
TOKEN_ENV = "INTEREST_SERVICE_TOKEN"


@dataclass
class Story:
    """What happened, step by step, with its figures and the time it took."""
    started: float = field(default_factory=time.monotonic)
    lines: list[str] = field(default_factory=list)
    facts: dict[str, Any] = field(default_factory=dict)

    def step(self, title: str, work: Callable[[], Any], tell: Callable[[Any], str]) -> Any:
        log.info("demo-loop: %s ...", title)
        began = time.monotonic()
        result = work()
        line = f"[{time.monotonic() - self.started:7.1f} s] {title} ({time.monotonic() - began:.1f} s): {tell(result)}"
        log.info("demo-loop: %s", line)
        self.lines.append(line)
        return result

    def text(self) -> str:
        return "\n".join([*self.lines, f"wall time: {time.monotonic() - self.started:.1f} s"])


def demo_params(params: Params) -> Params:
    """A fresh demo.dir with a params.yaml copy of the sample: everything it writes lands there."""
    folder = params.path(params.demo.dir)
    if folder.exists():
        shutil.rmtree(folder)
    return load_params(derive_params(params.root / "params.yaml", folder,
                                     {"data": {"sample_users": params.demo.sample_users}}))


def train_all(params: Params) -> dict[str, dict]:
    """Every pipeline step in order, each step's time logged: the pipeline is most of the story's."""
    summaries = {}
    for step in STEPS:
        began = time.monotonic()
        summaries[step.name] = run_step(step.name, params)
        log.info("demo-loop: pipeline step %s took %.1f s", step.name, time.monotonic() - began)
    return summaries


def gate_line(summaries: dict[str, dict]) -> str:
    gate = summaries["gate"]
    figures = {"candidate": gate.get("candidate_figures", {}), "production": gate.get("production_figures", {})}
    shown = "; ".join(f"{who} NDCG@10 {f['ndcg@10']}, cold Recall@10 {f['cold_recall@10']}"
                      for who, f in figures.items() if f)
    ope = gate.get("off_policy")
    logged = "" if not ope else "; off-policy clicks per shown item " + ", ".join(
        f"{who} {ope[who]['value']} (support {ope[who]['support']})" for who in ("candidate", "production") if who in ope)
    return (f"gate: {gate['candidate']} {gate['decision']} ({'; '.join([shown, *gate['reasons']])}{logged}; "
            f"production was {gate['production']})")


def online_line(found: MonitorPass) -> str:
    window = found.window
    rows = "; ".join(f"{r['model_tag']}: CTR {r['ctr']:.4f}, NDCG@10 {r['ndcg@10']}, new-product share "
                     f"{r['new_item_share']:.3f}" for r in window["metrics"])
    drift = window["drift"]
    drifted = [v["view"] for v in drift["views"] if v["drifted"]]
    return (f"{window['events']} events ({window['check']['quarantined']} quarantined), {rows}; drift against "
            f"{drift['reference']}: {', '.join(drifted) or 'none'}; retrain: {found.retrain} ({found.why})")


def wait_for_swap(url: str, tag: str, seconds: float) -> str:
    """Until the service answers with `tag` (it polls the registry every serving.swap_poll_seconds)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        served = httpx.post(f"{url}/model_info", json={}, timeout=30).json()["model_tag"]
        if served == tag:
            return served
        time.sleep(1)
    raise InterestError(f"the service did not swap to {tag} within {seconds:.0f} s")


def demo_loop(params: Params) -> Story:
    cfg = params.demo
    story = Story()
    demo = story.step("a fresh sample project", lambda: demo_params(params),
                      lambda p: f"{p.root} ({cfg.sample_users} shoppers of {p.data.dataset})")
    first = story.step("train, evaluate, register, gate, build the bento (the pipeline)", lambda: train_all(demo), gate_line)
    token = service_token(demo.path(demo.serving.token_file))
    env = {**os.environ, "INTEREST_PARAMS": str(demo.root / "params.yaml"), "BENTOML_HOME": str(store_home(demo)),
           TOKEN_ENV: token, "BENTOML_DO_NOT_TRACK": "True"}
    server: LocalServer = story.step("serve the production version", lambda: start_server(
        env, demo.root / "service.log", cfg.startup_seconds), lambda s: s.url)
    try:
        shoppers = held_out_shoppers(demo, cfg.shoppers)
        phases = {}
        phases["before"] = story.step("simulated shoppers, no shift", lambda: simulate(
            demo, server.url, token, cases=shoppers, surge="", new_products=0), simulated_line)
        story.step("monitoring pass 1", lambda: monitor(demo), online_line)
        phases["shift"] = story.step("simulated shoppers, shifted: new products and a surge", lambda: simulate(
            demo, server.url, token, cases=shoppers, surge=cfg.surge, new_products=cfg.new_products), simulated_line)
        found = story.step("monitoring pass 2, accepting the feedback if it decides to retrain",
                           lambda: monitor_and_accept(demo), online_line)
        if found.data_version is None:
            story.lines.append(f"no retraining: {found.why}; the story ends here")
            return story
        version = found.data_version
        story.lines.append(f"accepted feedback -> new data version {demo.ingest.feedback_dir}: windows "
                           f"{', '.join(version['windows'])} (sha256 {version['sha256']})")
        second = story.step("retrain on it (the pipeline again)", lambda: train_all(demo),
                            lambda s: f"{s['ingest']['feedback']['appended']} feedback interactions appended; {gate_line(s)}")
        story.facts.update(first=first, second=second, version=version, phases=phases)
        if second["gate"]["decision"] != "promoted":
            story.lines.append("the gate kept production: the service goes on answering with it")
            return story
        story.step("the service swaps", lambda: wait_for_swap(server.url, second["gate"]["candidate"],
                                                              cfg.startup_seconds), lambda tag: f"now serving {tag}")
        phases["after"] = story.step("the same shoppers, still shifted", lambda: simulate(
            demo, server.url, token, cases=shoppers, surge=phases["shift"]["surge"], new_products=0), simulated_line)
        story.step("monitoring pass 3", lambda: monitor(demo), online_line)
    finally:
        server.stop()
    story.lines.append(reports_line(demo))
    return story


def simulated_line(summary: dict) -> str:
    shift = f", surge {summary['surge']!r} ({summary['surge_impressions']} surge items shown)" if summary["surge"] else ""
    return (f"{summary['shoppers']} shoppers, {summary['impressions']} impressions, CTR {summary['ctr']:.4f}, "
            f"hit rate {summary['hit_rate']:.4f}, {summary['new_products']} new products added{shift}")


def reports_line(params: Params) -> str:
    cfg = params.monitor
    files = [params.path(cfg.drift_dir) / "index.html", params.path(cfg.plot_file), params.path(cfg.metrics_file),
             params.path(params.gate.metrics_file), params.path(params.evaluate.report_file)]
    return "reports:\n" + "\n".join(f"  {f}" for f in files if Path(f).exists())
