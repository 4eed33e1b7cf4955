"""`interest feedback-report`: what should merchandisers fix, by what shoppers write.

The reviews of reviews.dataset are grouped into topics (components/analysis/review_topics.py);
a review is negative by its stars. The report (reviews.report_file) lists the topics with the
most negative reviews, their trend over time and example snippets, overall and for the products
with the most negative reviews. Review texts sent to the service's feedback endpoint carry no
verdict of their own: the sentiment classifier scores them and they join the nearest topic.
Every table goes through disclosure control (privacy.*): groups of fewer reviews than
privacy.min_group_size are suppressed, and counts carry Laplace noise when epsilon > 0.
"""
from __future__ import annotations

import html
import logging

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from components.analysis.review_topics import Topics, fit_topics, negative_by_topic, trend
from components.core.config.schema import Params
from components.core.device import select_device
from components.core.disclosure import protect
from components.core.html_page import html_page
from components.core.io import read_json, read_parquet, write_json
from components.feedback.checked_windows import valid_window_files
from components.data.review_texts import read_review_texts
from components.evaluation.report import figure_png_base64
from components.feedback.events import REVIEW
from components.features.text_encoder import load_text_encoder
from components.models.sentiment import LABELS, load_classifier, star_labels

log = logging.getLogger(__name__)

NEGATIVE = LABELS.index("negative")


def protected(table: pd.DataFrame, params: Params, seed_offset: int) -> tuple[pd.DataFrame, int]:
    """protect() on reviews and negative counts, the share recomputed from what is published."""
    shown, suppressed = protect(table, "reviews", ["reviews", "negative"], params.privacy,
                                params.reviews.topics.seed + seed_offset)
    return shown.assign(negative_share=shown["negative"] / shown["reviews"].clip(lower=1)), suppressed


def snippets(reviews: pd.DataFrame, embeddings: np.ndarray, topics: Topics, topic: int, n: int,
             chars: int) -> list[str]:
    """The negative reviews of a topic nearest its centre: the most typical complaints."""
    rows = np.flatnonzero((reviews["topic"].to_numpy() == topic) & reviews["negative"].to_numpy())
    nearest = rows[np.argsort(((embeddings[rows] - topics.centroids[topic]) ** 2).sum(1), kind="stable")[:n]]
    return [t if len(t) <= chars else t[:chars].rsplit(" ", 1)[0] + " …" for t in reviews["text"].iloc[nearest]]


def served_review_texts(params: Params) -> list[str]:
    """Review texts of the feedback that monitoring found valid, so bot floods and malformed events
    stay out."""
    texts: list[str] = []
    for path in valid_window_files(params.path(params.monitor.out_dir)):
        events = read_parquet(path)
        if {"kind", "text"} <= set(events.columns):
            texts += events.loc[(events["kind"] == REVIEW) & events["text"].notna(), "text"].astype(str).tolist()
    return texts


def served_reviews(params: Params, topics: Topics, encode) -> dict:
    """The review texts the service received, scored by the sentiment classifier, and the topics
    of those it calls negative."""
    texts = served_review_texts(params)
    if not texts:
        return {"reviews": 0}
    cfg = params.reviews.sentiment
    classifier = load_classifier(params.path(cfg.model_file), cfg, select_device(cfg.device))
    predicted = classifier.predict_proba(texts, cfg.eval_batch_size).argmax(1)
    negative_topics = topics.assign(encode(texts))[predicted == NEGATIVE]
    return {"reviews": len(texts),
            "predicted": dict(zip(LABELS, np.bincount(predicted, minlength=len(LABELS)).tolist())),
            "negative_by_topic": {int(t): int(n) for t, n in zip(*np.unique(negative_topics, return_counts=True))}}


def trend_figure(trends: pd.DataFrame, names: dict[int, str]) -> Figure:
    fig = Figure(figsize=(9, 3.6))
    ax = fig.subplots()
    periods = sorted(trends["period"].unique())
    position = {p: i for i, p in enumerate(periods)}
    for topic, rows in trends.groupby("topic"):
        ax.plot(rows["period"].map(position), rows["negative"], marker="o", markersize=3, label=names[topic])
    ax.set_xticks(range(len(periods)), periods)
    ax.set_ylabel("negative reviews")
    ax.set_title("negative reviews per period, by topic (the most negative topics)")
    ax.legend(fontsize=7, loc="upper left")
    ax.grid(alpha=0.3)
    ax.tick_params(axis="x", rotation=45)
    return fig


def product_groups(reviews: pd.DataFrame) -> pd.Series:
    """Each review's product group: the topic most of its product's reviews are about. The data
    sets with review text carry no categories (reviews.dataset), so the reviews make them."""
    dominant = reviews.groupby("item")["topic"].agg(lambda t: t.value_counts().index[0])
    return reviews["item"].map(dominant)


def build_summary(reviews: pd.DataFrame, embeddings: np.ndarray, topics: Topics, params: Params) -> dict:
    cfg = params.reviews.topics
    names = dict(enumerate(topics.names))
    overall, suppressed_topics = protected(negative_by_topic(reviews, ["topic"]), params, 0)
    worst = overall.sort_values(["negative", "negative_share"], ascending=False)
    by_group, suppressed_groups = protected(negative_by_topic(reviews, ["group", "topic"]), params, 1)
    products, suppressed_products = protected(negative_by_topic(reviews, ["group", "item"]), params, 3)
    group_totals = by_group.groupby("group")["negative"].sum().sort_values(ascending=False, kind="stable")
    trends, suppressed_periods = protected(trend(reviews, cfg), params, 2)
    top_topics = worst["topic"].head(cfg.product_groups).tolist()
    return {
        "dataset": params.reviews.dataset,
        "reviews": len(reviews), "products": int(reviews["item"].nunique()),
        "period": [str(pd.to_datetime(reviews["timestamp"].min(), unit="s").date()),
                   str(pd.to_datetime(reviews["timestamp"].max(), unit="s").date())],
        "negative_reviews": int(reviews["negative"].sum()),
        "topics": {"k": len(topics.terms), "silhouette": topics.silhouette,
                   "criterion": "the candidate number of topics with the highest silhouette (Euclidean on unit-length "
                                "text embeddings, seeded sample)",
                   "table": [{"topic": int(r.topic), "name": names[r.topic], "terms": topics.terms[r.topic],
                              "reviews": int(r.reviews), "negative": int(r.negative),
                              "negative_share": round(float(r.negative_share), 4),
                              "snippets": snippets(reviews, embeddings, topics, int(r.topic), cfg.snippets,
                                                   cfg.snippet_chars)}
                             for r in worst.itertuples()]},
        "product_groups": [
            {"group": int(group), "name": names[group], "negative": int(total),
             "products": int((reviews["group"] == group).groupby(reviews["item"]).any().sum()),
             "topics": [{"topic": int(r.topic), "name": names[r.topic], "reviews": int(r.reviews),
                         "negative": int(r.negative), "negative_share": round(float(r.negative_share), 4)}
                        for r in by_group[by_group["group"] == group]
                        .sort_values("negative", ascending=False, kind="stable").itertuples() if r.negative],
             "worst_products": [{"item": r.item, "reviews": int(r.reviews), "negative": int(r.negative),
                                 "negative_share": round(float(r.negative_share), 4)}
                                for r in products[products["group"] == group]
                                .sort_values(["negative", "negative_share"], ascending=False, kind="stable")
                                .head(cfg.snippets).itertuples() if r.negative]}
            for group, total in group_totals.head(cfg.product_groups).items()],
        "trend": [{"period": r.period, "topic": int(r.topic), "reviews": int(r.reviews), "negative": int(r.negative)}
                  for r in trends[trends["topic"].isin(top_topics)].itertuples()],
        "privacy": {"min_group_size": params.privacy.min_group_size, "laplace_epsilon": params.privacy.laplace_epsilon,
                    "suppressed": {"topics": suppressed_topics, "group_topics": suppressed_groups,
                                   "products": suppressed_products, "period_topics": suppressed_periods}},
    }


def _rows(cells: list[list[str]]) -> str:
    return "".join("<tr>" + "".join(f"<td>{c}</td>" for c in row) + "</tr>" for row in cells)


def feedback_html(summary: dict, sentiment: dict | None) -> str:
    names = {t["topic"]: t["name"] for t in summary["topics"]["table"]}
    top = [t for t in summary["topics"]["table"] if t["negative"]][:len(summary["product_groups"]) or None]
    trends = pd.DataFrame(summary["trend"])
    plot = (f"<img alt='trend' src='data:image/png;base64,{figure_png_base64(trend_figure(trends, names))}'>"
            if not trends.empty else "<p>No period has enough reviews to publish.</p>")
    topic_rows = _rows([[html.escape(t["name"]), str(t["negative"]), f"{t['negative_share']:.0%}", str(t["reviews"]),
                         "<br>".join(f"“{html.escape(s)}”" for s in t["snippets"])] for t in top])
    group_blocks = "".join(
        f"<h3>{html.escape(g['name'])}: {g['products']} products, {g['negative']} negative reviews</h3><table>"
        "<tr><th>negative topic</th><th>negative reviews</th><th>share of its reviews</th></tr>"
        + _rows([[html.escape(t["name"]), str(t["negative"]), f"{t['negative_share']:.0%}"] for t in g["topics"][:3]])
        + "</table>" + ("<p>Products to look at first: " + ", ".join(
            f"{html.escape(p['item'])} ({p['negative']} of {p['reviews']} reviews negative)"
            for p in g["worst_products"]) + "</p>" if g["worst_products"] else "")
        for g in summary["product_groups"])
    served = summary["served"]
    served_html = ("<p>No review texts have reached the service's feedback endpoint yet.</p>" if not served["reviews"]
                   else f"<p>{served['reviews']} review texts received; the classifier calls them "
                        + ", ".join(f"{n} {label}" for label, n in served["predicted"].items()) + ". Negative ones by topic: "
                        + (", ".join(f"{html.escape(names.get(t, str(t)))} ({n})"
                                     for t, n in served["negative_by_topic"].items()) or "none") + ".</p>")
    sentiment_html = "" if sentiment is None else (
        "<p>Sentiment classifier (held-out shoppers' reviews): macro-F1 "
        + ", ".join(f"{html.escape(name)} {m['macro_f1']:.3f}" for name, m in sentiment["test"]["models"].items())
        + ".</p>")
    privacy = summary["privacy"]
    suppressed = sum(privacy["suppressed"].values())
    return html_page("Improvement suggestions", style="td,th{text-align:left}td:last-child{font-size:.9em}", body=(
            f"<h1>Improvement suggestions: {html.escape(summary['dataset'])}</h1>"
            f"<p>{summary['reviews']} reviews of {summary['products']} products, {summary['period'][0]} to "
            f"{summary['period'][1]}; {summary['negative_reviews']} negative (by stars). "
            f"{summary['topics']['k']} topics chosen by silhouette.</p>{sentiment_html}"
            "<h2>Most frequent negative topics</h2><table><tr><th>topic (distinctive terms)</th><th>negative reviews</th>"
            f"<th>share of its reviews</th><th>reviews</th><th>typical complaints</th></tr>{topic_rows}</table>"
            f"<h2>Trend over time</h2>{plot}"
            "<h2>Product groups with the most negative reviews</h2><p>A product's group is the topic most of its "
            f"reviews are about.</p>{group_blocks}"
            f"<h2>Reviews sent to the service</h2>{served_html}"
            f"<h2>Privacy</h2><p>Groups of fewer than {privacy['min_group_size']} reviews are not shown ({suppressed} "
            f"suppressed); Laplace noise epsilon {privacy['laplace_epsilon']} (0: none).</p>"))


def run(params: Params) -> dict:
    cfg = params.reviews.topics
    reviews = read_review_texts(params)
    reviews = reviews.assign(negative=star_labels(reviews["rating"], params.reviews.sentiment) == NEGATIVE)
    encoder = load_text_encoder(params.embed.encoder, select_device(params.embed.device), params.embed.max_tokens)
    embeddings = encoder.encode(reviews["text"].tolist(), cfg.batch_size, progress=True)
    topics = fit_topics(reviews["text"], embeddings, cfg)
    reviews = reviews.assign(topic=topics.labels)
    reviews = reviews.assign(group=product_groups(reviews))
    summary = build_summary(reviews, embeddings, topics, params)
    summary["served"] = served_reviews(params, topics, lambda texts: encoder.encode(texts, cfg.batch_size))
    write_json(summary, params.path(cfg.metrics_file))
    sentiment_file = params.path(params.reviews.sentiment.metrics_file)
    sentiment = read_json(sentiment_file) if sentiment_file.is_file() else None
    report = params.path(params.reviews.report_file)
    report.parent.mkdir(parents=True, exist_ok=True)
    report.write_text(feedback_html(summary, sentiment), encoding="utf-8")
    log.info("feedback report: %s", report)
    return {"topics": summary["topics"]["k"], "negative_topics": [t["name"] for t in summary["topics"]["table"][:5]],
            "served_reviews": summary["served"]["reviews"], "report": str(report),
            "metrics_file": str(cfg.metrics_file)}
