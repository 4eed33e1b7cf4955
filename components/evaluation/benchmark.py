"""Our measured figures next to the published ones for the same dataset, protocol by protocol.

Reads the evaluation output (evaluate.metrics_file: the deployed recommender's figures and the
peers' protocol ones), the published figures
(benchmark.published_file: by dataset, each row with the protocol it was measured on) and, when
training has run, its wall time (train.metrics_file, key `train_seconds`), so `make
bench-quality` answers "where do we stand" in one table per protocol: unmasked (the history
stays rankable) and masked (items already in the history are removed before ranking).
"""
from __future__ import annotations

import pandas as pd

from components.core.config.schema import Params
from components.core.errors import InterestError
from components.core.io import read_json
from components.evaluation.metrics import HEADLINE_SUBSET, PROTOCOLS
from components.evaluation.ranking import PROTOCOL_PEERS, SETTINGS


def quality_rows(figures: dict, published: list[dict], protocol: str, k: int) -> pd.DataFrame:
    """One row per model of ours (`figures`: {protocol: {subset: {model: metrics}}}) and per
    published row on `protocol` at cut-off k, best NDCG first. Pass no published rows where ours
    were not measured under the published protocol."""
    recall, ndcg = f"recall@{k}", f"ndcg@{k}"
    ours = [{"kind": "ours", "model": model, recall: m[recall], ndcg: m[ndcg],
             "source": f"measured: {HEADLINE_SUBSET}, {protocol}"}
            for model, m in figures[protocol][HEADLINE_SUBSET].items()]
    theirs = [{"kind": "published", "model": r["model"], recall: r[recall], ndcg: r[ndcg], "source": r["source"]}
              for r in published if r["protocol"] == protocol]
    return pd.DataFrame(ours + theirs).sort_values(ndcg, ascending=False, kind="stable").reset_index(drop=True)


def table_lines(table: pd.DataFrame, k: int) -> list[str]:
    width = max(table["model"].str.len().max(), len("model"))
    return [f"{'':<9}  {'model':<{width}}  {f'R@{k}':>6}  {f'N@{k}':>6}  source",
            *(f"{r.kind:<9}  {r.model:<{width}}  {r[f'recall@{k}']:>6.4f}  {r[f'ndcg@{k}']:>6.4f}  {r.source}"
              for _, r in table.iterrows())]


def published_for(params: Params) -> tuple[dict, dict]:
    """The published file, and its entry for data.dataset (empty when it has none)."""
    published = read_json(params.path(params.benchmark.published_file))
    entry = published["datasets"].get(params.data.dataset, {"description": params.data.dataset, "results": []})
    return published, entry


def train_seconds(params: Params) -> float | None:
    path = params.path(params.train.metrics_file)
    return read_json(path).get("train_seconds") if path.is_file() else None


def measured_on(cases: dict[str, int]) -> str:
    n_cold = cases.get("test_cold", 0)
    if not n_cold:
        return f"measured on {cases[HEADLINE_SUBSET]} test cases, none with a cold target (the published setting)"
    return (f"measured on {cases[HEADLINE_SUBSET]} test cases, {n_cold} of them with a cold target (held out of training; "
            "the published setting has none: see test_warm in the report, or `make bench-quality-published`)")


def quality_report(params: Params) -> str:
    """The bench-quality tables as text. First the peers' protocol (trained on the training
    interactions only, selected on valid, tested once), per ranking protocol, with the published
    rows beside it when the split is the published setting; then the deployed recommender (also
    trained on the valid items), ours alone: it is never set beside a published row."""
    metrics_file = params.path(params.evaluate.metrics_file)
    if not metrics_file.is_file():
        raise InterestError(f"no evaluation results at {metrics_file}: run `interest evaluate` (or `dvc repro evaluate`) first")
    published, entry = published_for(params)
    ranking = read_json(metrics_file)
    if PROTOCOL_PEERS not in ranking:
        raise InterestError(f"{metrics_file} predates the peers' protocol figures: run `interest evaluate` again")
    k = published["k"]
    published_setting = not ranking["cases"].get("test_cold", 0) and not params.data.sample_users
    lines = [entry["description"], measured_on(ranking["cases"])]
    if not entry["results"]:
        lines.append(f"no published figures for {params.data.dataset} in {params.benchmark.published_file}")
    elif not published_setting:
        lines.append("published figures are set only beside the published setting (every shopper, no held-out new "
                     "products): `make bench-quality-published`")
    beside = entry["results"] if published_setting else []
    for setting, figures, rows in ((PROTOCOL_PEERS, ranking[PROTOCOL_PEERS], beside), ("deployed", ranking, [])):
        lines += ["", f"{setting}: {SETTINGS[setting]}"]
        for protocol in PROTOCOLS:
            lines += [f"protocol {protocol}: {published['protocols'][protocol]}",
                      *table_lines(quality_rows(figures, rows, protocol, k), k)]
    lines += ["", "the interest model and the fusion read item text (embed.encoder); the published sequential "
              "models (all but GRAM) read item ids alone"]
    seconds = train_seconds(params)
    lines.append(f"interest model training wall time: {seconds:.0f} s" if seconds is not None
                 else f"interest model training wall time: n/a (no {params.train.metrics_file})")
    check = ranking.get("popularity_check")
    pop = next((r for r in entry["results"] if r["model"] == "Pop"), None)
    if check and pop:
        lines.append(f"popularity check: counted over all interactions, test targets included (a leak; how the "
                     f"published Pop row counts): R@{k} {check[f'recall@{k}']:.4f}  N@{k} {check[f'ndcg@{k}']:.4f} "
                     f"vs published {pop[f'recall@{k}']:.4f} / {pop[f'ndcg@{k}']:.4f}; our popularity row counts "
                     "the interactions known before the test")
    lines.append(f"note: {published['note']}")
    return "\n".join(lines)
