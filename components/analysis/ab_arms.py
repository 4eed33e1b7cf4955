"""`interest ab-report`: is the difference between A/B arms real?

Per arm, from the feedback store: slates served, items shown, clicks and purchases; the
click-through rate of shown items and the conversion (purchases per slate), each with a Wilson
confidence interval. Each arm is tested against the first (the control) with a two-proportion z
test (statsmodels), next to the minimum detectable effect the traffic seen so far allows (at
ab.alpha and ab.power) and the traffic a test needs to detect ab.min_relative_effect. Looking
before that traffic is reached, and stopping when p < alpha, inflates false positives: the
report says so (a sequential-testing warning) instead of calling a winner.
"""
from __future__ import annotations

import html
import logging
import math
import time
from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from scipy.optimize import brentq
from scipy.special import ndtr, ndtri
from statsmodels.stats.proportion import proportion_confint, proportion_effectsize, proportions_ztest

from components.core.config.schema import ABParams, Params, PrivacyParams
from components.core.disclosure import protect
from components.core.errors import InterestError
from components.core.html_page import html_page
from components.core.io import write_json
from components.evaluation.report import figure_png_base64
from components.feedback.events import CLICK, PURCHASE
from components.feedback.store import open_store

log = logging.getLogger(__name__)

METRICS = {"ctr": ("clicks", "items_shown"), "conversion": ("purchases", "slates")}   # successes, trials
COUNT_COLUMNS = ("shoppers", "slates", "items_shown", "clicks", "purchases")


@dataclass(frozen=True)
class Comparison:
    arm: str
    control: str
    metric: str
    rate: float
    control_rate: float
    relative_lift: float | None
    z: float | None
    p_value: float | None
    significant: bool
    mde_relative: float | None      # the smallest relative lift this traffic detects at ab.power
    needed_per_arm: int | None      # traffic per arm to detect ab.min_relative_effect at ab.power
    early: bool                     # looked at before that traffic: a p-value now is not a verdict


def arm_counts(slates: pd.DataFrame, events: pd.DataFrame) -> pd.DataFrame:
    """Per arm (in the order arms first served): shoppers (known ones), slates, items_shown, clicks, purchases."""
    shown = slates.assign(items_shown=slates["items"].map(len))
    by_request = events[events["request_id"].isin(set(slates["request_id"]))]
    kinds = by_request.groupby(["request_id", "kind"]).size().unstack(fill_value=0)
    counted = shown.join(kinds, on="request_id").fillna({CLICK: 0, PURCHASE: 0})
    for kind in (CLICK, PURCHASE):
        counted[kind] = counted[kind] if kind in counted else 0
    out = counted.groupby("arm", sort=False).agg(shoppers=("user", "nunique"), slates=("request_id", "size"),
                                                  items_shown=("items_shown", "sum"),
                                                  clicks=(CLICK, "sum"), purchases=(PURCHASE, "sum"))
    return out.astype("int64").reset_index()


def interval(successes: int, trials: int, alpha: float) -> tuple[float, float]:
    low, high = proportion_confint(successes, trials, alpha=alpha, method="wilson") if trials else (math.nan, math.nan)
    return float(low), float(high)


def _detectable_x(cfg: ABParams) -> float:
    """h * sqrt(n) at which a two-sided z test at cfg.alpha rejects with probability cfg.power (h
    Cohen's h, n = 1 / (1/n_control + 1/n_arm)): the normal power equation with both tails, as
    statsmodels' NormalIndPower has it, solved in microseconds (its solve_power takes 13 ms). The
    closed form z(1 - alpha/2) + z(power) leaves out the opposite tail, so the root lies below it;
    the bracket ends one above it, where the power exceeds cfg.power beyond rounding."""
    z = -float(ndtri(cfg.alpha / 2))   # not ndtri(1 - alpha/2): 1 - a tiny alpha rounds to 1

    def excess(x: float) -> float:
        return float(ndtr(x - z) + ndtr(-x - z)) - cfg.power

    if excess(0.0) >= 0:   # power within rounding of alpha: any difference is detectable
        return 0.0
    return brentq(excess, 0.0, z + float(ndtri(cfg.power)) + 1.0, xtol=1e-12)


def minimum_detectable_lift(rate: float, n_control: int, n_arm: int, cfg: ABParams) -> float | None:
    """The relative lift over `rate` a two-sided test at cfg.alpha detects with cfg.power."""
    if not (0 < rate < 1) or min(n_control, n_arm) == 0:
        return None
    h = _detectable_x(cfg) * math.sqrt(1 / n_control + 1 / n_arm)
    lifted = math.sin(min(math.asin(math.sqrt(rate)) + h / 2, math.pi / 2)) ** 2   # Cohen's h back to a rate
    return lifted / rate - 1


def needed_per_arm(rate: float, cfg: ABParams) -> int | None:
    target = rate * (1 + cfg.min_relative_effect)
    if not (0 < rate < 1) or target >= 1:
        return None
    h = abs(proportion_effectsize(target, rate))
    return int(math.ceil(2 * (_detectable_x(cfg) / h) ** 2))   # equal arms: n = n_arm / 2


def compare(counts: pd.DataFrame, cfg: ABParams) -> list[Comparison]:
    """Every arm after the first against the first, on each metric."""
    control = counts.iloc[0]
    out = []
    for _, arm in counts.iloc[1:].iterrows():
        for metric, (column, base) in METRICS.items():
            x = np.array([arm[column], control[column]])
            n = np.array([arm[base], control[base]])
            rate, control_rate = (x / np.maximum(n, 1)).tolist()
            tested = n.min() > 0 and 0 < x.sum() < n.sum()
            z, p = proportions_ztest(x, n) if tested else (None, None)
            needed = needed_per_arm(control_rate, cfg)
            out.append(Comparison(
                arm=str(arm["arm"]), control=str(control["arm"]), metric=metric, rate=rate, control_rate=control_rate,
                relative_lift=rate / control_rate - 1 if control_rate else None,
                z=None if z is None else float(z), p_value=None if p is None else float(p),
                significant=bool(p is not None and p < cfg.alpha),
                mde_relative=minimum_detectable_lift(control_rate, int(n[1]), int(n[0]), cfg),
                needed_per_arm=needed, early=bool(needed is None or int(n.min()) < needed)))
    return out


def ab_summary(slates: pd.DataFrame, events: pd.DataFrame, cfg: ABParams, privacy: PrivacyParams) -> dict:
    """Arms of fewer known shoppers than privacy.min_group_size are left out (and counted); the
    published counts carry Laplace noise when privacy.laplace_epsilon > 0, the rates follow them."""
    counts, suppressed = protect(arm_counts(slates, events), "shoppers", list(COUNT_COLUMNS), privacy, cfg.seed)
    arms = []
    for row in counts.to_dict("records"):
        ctr_low, ctr_high = interval(row["clicks"], row["items_shown"], cfg.alpha)
        conv_low, conv_high = interval(row["purchases"], row["slates"], cfg.alpha)
        arms.append({**row, "ctr": row["clicks"] / max(row["items_shown"], 1), "ctr_interval": [ctr_low, ctr_high],
                     "conversion": row["purchases"] / max(row["slates"], 1), "conversion_interval": [conv_low, conv_high]})
    comparisons = [asdict(c) for c in compare(counts, cfg)] if len(counts) > 1 else []
    return {"alpha": cfg.alpha, "power": cfg.power, "min_relative_effect": cfg.min_relative_effect,
            "arms": arms, "comparisons": comparisons,
            "privacy": {"min_group_size": privacy.min_group_size, "laplace_epsilon": privacy.laplace_epsilon,
                        "suppressed_arms": suppressed}}


def _plot(summary: dict) -> str:
    """CTR and conversion per arm with their intervals, as an inline PNG."""
    fig = Figure(figsize=(9, 3.2))
    for ax, metric in zip(fig.subplots(1, 2), ("ctr", "conversion")):
        names = [a["arm"] for a in summary["arms"]]
        values = np.array([a[metric] for a in summary["arms"]])
        low, high = np.array([a[f"{metric}_interval"] for a in summary["arms"]]).T
        ax.errorbar(values, range(len(names)), xerr=[values - low, high - values], fmt="o", capsize=4)
        ax.set_yticks(range(len(names)), names)
        ax.set_title(f"{metric} ({1 - summary['alpha']:.0%} interval)")
        ax.grid(alpha=0.3)
    fig.tight_layout()
    return figure_png_base64(fig)


def _verdict(c: dict) -> str:
    if c["p_value"] is None:
        return "no test: no events or no variation yet"
    if c["early"]:
        return (f"<b>too early</b>: {c['needed_per_arm'] or '?'} per arm are needed to detect the planned effect; "
                "a p-value now is not a verdict")
    return "<b>a real difference</b>" if c["significant"] else "no difference detected"


def _number(x: float | None, fmt: str) -> str:
    return "–" if x is None or (isinstance(x, float) and math.isnan(x)) else format(x, fmt)


def ab_html(summary: dict) -> str:
    arm_rows = "".join(
        f"<tr><td>{html.escape(a['arm'])}</td><td>{a['slates']}</td><td>{a['items_shown']}</td><td>{a['clicks']}</td>"
        f"<td>{a['purchases']}</td>"
        + "".join(f"<td>{_number(a[m], '.2%')} [{_number(a[m + '_interval'][0], '.2%')}, "
                  f"{_number(a[m + '_interval'][1], '.2%')}]</td>" for m in METRICS)
        + "</tr>" for a in summary["arms"])
    test_rows = "".join(
        f"<tr><td>{html.escape(c['arm'])} vs {html.escape(c['control'])}</td><td>{c['metric']}</td>"
        f"<td>{_number(c['relative_lift'], '+.1%')}</td>"
        f"<td>{'&lt; 0.0001' if c['p_value'] is not None and c['p_value'] < 1e-4 else _number(c['p_value'], '.4f')}</td>"
        f"<td>{_number(c['mde_relative'], '.1%')}</td><td>{c['needed_per_arm'] or '–'}</td><td>{_verdict(c)}</td></tr>"
        for c in summary["comparisons"])
    return html_page("A/B report", body=(
            f"<h1>A/B report</h1><p>Two-sided two-proportion z tests at alpha {summary['alpha']}, power "
            f"{summary['power']}, planned minimum effect {summary['min_relative_effect']:.0%} (relative).</p>"
            "<h2>Arms</h2><table><tr><th>arm</th><th>slates</th><th>items shown</th><th>clicks</th><th>purchases</th>"
            f"<th>CTR [interval]</th><th>conversion [interval]</th></tr>{arm_rows}</table>"
            f"<img alt='rates per arm' src='data:image/png;base64,{_plot(summary)}'>"
            "<h2>Against the control</h2><table><tr><th>arms</th><th>metric</th><th>relative lift</th><th>p-value</th>"
            f"<th>detectable lift now</th><th>needed per arm (CTR: items shown; conversion: slates)</th><th>verdict</th></tr>"
            f"{test_rows}</table>"
            f"<h2>Privacy</h2><p>Arms of fewer than {summary['privacy']['min_group_size']} known shoppers are not shown "
            f"({summary['privacy']['suppressed_arms']} suppressed); Laplace noise epsilon "
            f"{summary['privacy']['laplace_epsilon']} on the published counts (0: none).</p>"))


def ab_report(params: Params) -> dict:
    """The feedback store's arms: ab.metrics_file (JSON) and ab.report_file (HTML)."""
    store = open_store(params)
    try:
        slates, events = store.slates_between(0.0, time.time()), store.events_between(0.0, time.time())
    finally:
        store.close()
    if slates.empty:
        raise InterestError("no served slates in the feedback store yet: nothing to compare")
    summary = ab_summary(slates, events, params.ab, params.privacy)
    write_json(summary, params.path(params.ab.metrics_file))
    report = params.path(params.ab.report_file)
    report.parent.mkdir(parents=True, exist_ok=True)
    report.write_text(ab_html(summary), encoding="utf-8")
    log.info("A/B report of %d arms: %s", len(summary["arms"]), report)
    return {**summary, "report": str(report)}
