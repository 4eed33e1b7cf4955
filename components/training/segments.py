"""`interest segments`: which kinds of shoppers are there?

Shoppers of the training split are clustered on what the interest model has learnt of them (its
hidden state after their history, PCA-reduced) next to their behaviour: activity, recency (where
the data has timestamps), the text mix of their items (their mean item text embedding,
PCA-reduced) and rating habits (where the data has ratings). Each feature block is standardised
and weighted (segments.weights), so no block wins by its width or its units. The number of
segments is the candidate with the highest silhouette on a seeded sample; the stability of each
candidate (adjusted Rand index between two k-means seeds) is reported beside it.

Every published figure goes through disclosure control (components/core/disclosure.py): a
segment of fewer than privacy.min_group_size shoppers is suppressed (and counted), so is an item
or category fewer shoppers of a segment took, and published counts of shoppers carry Laplace
noise when privacy.laplace_epsilon > 0. The segments' item popularity (the same protected counts)
and the shopper -> segment assignment are written for serving's popularity blend.
"""
from __future__ import annotations

import html
import logging
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse as sp
import torch
from matplotlib.figure import Figure
from sklearn.cluster import KMeans
from sklearn.decomposition import PCA
from sklearn.metrics import adjusted_rand_score, silhouette_score
from threadpoolctl import threadpool_limits

from components.core.batch_slices import batch_slices
from components.core.config.schema import Params, PrivacyParams, SegmentsParams
from components.core.device import select_device
from components.core.disclosure import protect
from components.core.errors import InterestError
from components.core.html_page import html_page
from components.core.io import read_parquet, write_json, write_parquet
from components.data.split import Split, load_split
from components.data.validate import validated_paths
from components.evaluation.report import figure_png_base64
from components.features.embeddings import load_item_embeddings
from components.models.checkpoint import final_model_path, load_checkpoint
from components.models.interest_model import InterestModel, left_pad

log = logging.getLogger(__name__)

SECONDS_PER_DAY = 86_400          # timestamps are Unix seconds (ingest)
TOP_RATING = 5.0                  # the rating scale's top (expectations/interactions.json: rating_in_range 1..5)
PATH_SEPARATOR, TERM_SEPARATOR = " | ", ", "   # how ingest joins category paths and the terms of one path
BLOCKS = ("model", "activity", "recency", "text", "ratings")   # feature blocks, as in segments.weights


@dataclass(frozen=True)
class Shoppers:
    users: np.ndarray              # the training split's shoppers, sorted
    histories: list[list[int]]     # their training items (item_idx), oldest first
    interactions: pd.DataFrame     # user, item, item_idx, timestamp, rating: one row per training interaction
    items: pd.DataFrame            # item_idx, item, title, categories (the catalogue; absent fields null)


@dataclass(frozen=True)
class KChoice:
    k: int
    labels: np.ndarray                 # segment per shopper, 0 = the largest
    silhouette: dict[int, float]       # per candidate k
    stability: dict[int, float]        # per candidate k: adjusted Rand index between the two seeds
    criterion: str


# --------------------------------------------------------------------------- inputs
def load_shoppers(params: Params) -> Shoppers:
    """Training histories with the validated interactions' timestamps and ratings and the catalogue's text fields."""
    split = load_split(params)
    validated = validated_paths(params)
    return shoppers_of(split, read_parquet(validated["interactions"]), read_parquet(validated["items"]))


def shoppers_of(split: Split, interactions: pd.DataFrame, items: pd.DataFrame) -> Shoppers:
    train = split.train.sort_values(["user", "position"], kind="stable")
    if train.empty:
        raise InterestError("the training split holds no interactions: run `interest split` on data with shoppers")
    train = train.merge(split.item_index[["item", "item_idx"]], on="item_idx", how="left")
    extra = [c for c in ("timestamp", "rating") if c in interactions.columns]
    joined = train.merge(interactions[["user", "item", *extra]].drop_duplicates(["user", "item"]),
                         on=["user", "item"], how="left")
    for column in ("timestamp", "rating"):
        joined[column] = pd.to_numeric(joined[column], errors="coerce") if column in joined else np.nan
    fields = [c for c in ("title", "categories") if c in items.columns]
    catalogue = split.item_index[["item", "item_idx"]].merge(items[["item", *fields]], on="item", how="left")
    for column in ("title", "categories"):
        catalogue[column] = catalogue[column] if column in catalogue else None
    histories = joined.groupby("user", sort=True)["item_idx"].agg(list)
    return Shoppers(histories.index.to_numpy(), [list(map(int, h)) for h in histories],
                    joined[["user", "item", "item_idx", "timestamp", "rating"]], catalogue)


@torch.inference_mode()
def shopper_states(model: InterestModel, histories: list[list[int]], batch_size: int) -> np.ndarray:
    """[U, hidden]: the model's state after each history's last item, the vector it scores the catalogue with."""
    model.eval()
    device = model.known.device
    items = model.item_representations()
    states = [model.user_states(left_pad(histories[chunk], model.cfg.max_len).to(device), items)[:, -1].float().cpu()
              for chunk in batch_slices(len(histories), batch_size)]
    return torch.cat(states).numpy()


def behaviour(shoppers: Shoppers) -> pd.DataFrame:
    """Per shopper (rows in shoppers.users order): interactions, recency_days, mean_rating, five_star_share;
    the last three NaN where the data has no timestamps or ratings."""
    inter = shoppers.interactions
    grouped = inter.groupby("user", sort=True)
    out = pd.DataFrame({"interactions": grouped.size()})
    latest = inter["timestamp"].max()
    out["recency_days"] = (latest - grouped["timestamp"].max()) / SECONDS_PER_DAY
    out["mean_rating"] = grouped["rating"].mean()
    out["five_star_share"] = (inter["rating"] >= TOP_RATING).where(inter["rating"].notna()).groupby(inter["user"]).mean()
    return out.reindex(shoppers.users).astype(float)


def mean_text(shoppers: Shoppers, embeddings: np.ndarray) -> np.ndarray:
    """[U, text_dim]: the mean text embedding of each shopper's training items (their text mix)."""
    rows = pd.Index(shoppers.users).get_indexer(shoppers.interactions["user"])
    counts = np.bincount(rows, minlength=len(shoppers.users))
    weights = sp.csr_matrix((1.0 / counts[rows], (rows, shoppers.interactions["item_idx"].to_numpy())),
                            shape=(len(shoppers.users), embeddings.shape[0]))
    return np.asarray(weights @ embeddings, dtype=np.float64)


# --------------------------------------------------------------------------- features and k
def feature_blocks(states: np.ndarray, text: np.ndarray, shopper_behaviour: pd.DataFrame) -> dict[str, np.ndarray]:
    """The raw blocks the data supports: a block whose columns are all missing (no timestamps, no ratings) is left out."""
    b = shopper_behaviour
    blocks = {"model": states, "activity": np.log1p(b[["interactions"]].to_numpy()), "text": text,
              "recency": b[["recency_days"]].to_numpy(), "ratings": b[["mean_rating", "five_star_share"]].to_numpy()}
    return {name: value for name, value in blocks.items() if not np.isnan(value).all()}


def feature_matrix(blocks: dict[str, np.ndarray], cfg: SegmentsParams) -> tuple[np.ndarray, dict[str, int]]:
    """Blocks reduced (model, text: PCA), standardised, missing values at the mean, each scaled to its
    weight's norm; concatenated. Returns the matrix and the width each used block got."""
    reduce_to = {"model": cfg.model_dims, "text": cfg.text_dims}
    parts, widths = [], {}
    for name in BLOCKS:
        weight = getattr(cfg.weights, name)
        if name not in blocks or weight == 0:
            continue
        block = np.nan_to_num(blocks[name] - np.nanmean(blocks[name], axis=0))
        if name in reduce_to and block.shape[1] > reduce_to[name]:
            block = PCA(reduce_to[name], random_state=cfg.seed).fit_transform(block)
        std = block.std(axis=0)
        block = np.divide(block, std, out=np.zeros_like(block), where=std > 0)
        parts.append(block * weight / np.sqrt(block.shape[1]))
        widths[name] = int(block.shape[1])
    if not parts:
        raise InterestError("segments.weights leave no feature block: give at least one block the data has a weight > 0")
    return np.hstack(parts), widths


def by_size(labels: np.ndarray) -> np.ndarray:
    """Labels renumbered so segment 0 is the largest (ties: the lower old label): stable names across runs."""
    sizes = np.bincount(labels)
    order = np.lexsort((np.arange(len(sizes)), -sizes))
    return np.argsort(order)[labels]


def choose_k(features: np.ndarray, cfg: SegmentsParams) -> KChoice:
    """k-means for every candidate k (fewer than the shoppers); the k with the highest silhouette wins."""
    n = len(features)
    candidates = sorted(k for k in set(cfg.k_candidates) if k < n)
    if not candidates:
        raise InterestError(f"{n} shoppers are too few for segments.k_candidates {list(cfg.k_candidates)}: "
                            "lower the candidates or use more data")
    sample = cfg.silhouette_sample if 0 < cfg.silhouette_sample < n else None
    labels, silhouette, stability = {}, {}, {}
    # torch loads its own OpenMP runtime: two spinning runtimes made k-means 20-100x slower than one thread
    with threadpool_limits(1, user_api="openmp"):
        for k in candidates:
            labels[k] = KMeans(k, n_init=cfg.n_init, random_state=cfg.seed).fit_predict(features)
            other = KMeans(k, n_init=cfg.n_init, random_state=cfg.stability_seed).fit_predict(features)
            silhouette[k] = float(silhouette_score(features, labels[k], sample_size=sample, random_state=cfg.seed))
            stability[k] = float(adjusted_rand_score(labels[k], other))
    best = max(candidates, key=lambda k: (silhouette[k], -k))   # ties: fewer segments
    criterion = (f"the k of {candidates} with the highest silhouette (Euclidean, on "
                 f"{'all ' + str(n) if sample is None else 'a seeded sample of ' + str(sample)} shoppers); stability: "
                 f"adjusted Rand index between k-means seeds {cfg.seed} and {cfg.stability_seed}")
    return KChoice(best, by_size(labels[best]), silhouette, stability, criterion)


# --------------------------------------------------------------------------- profiles under disclosure control
def most_specific_categories(categories: pd.Series) -> pd.Series:
    """item categories string -> the last (most specific) term of each of its category paths, one row per term."""
    paths = categories.dropna().astype(str).str.split(PATH_SEPARATOR, regex=False).explode()
    return paths.str.split(TERM_SEPARATOR, regex=False).str[-1].str.strip().loc[lambda s: s != ""]


def protected_seeds(seed: int, n: int) -> list[int]:
    """Independent noise seeds for each protected table (one seed would reuse the same noise draws)."""
    return [int(s) for s in np.random.SeedSequence(seed).generate_state(n)]


def segment_table(labels: np.ndarray, shopper_behaviour: pd.DataFrame) -> pd.DataFrame:
    """Per segment: shoppers and the behaviour figures of its profile (unprotected)."""
    b = shopper_behaviour.assign(segment=labels)
    grouped = b.groupby("segment")
    return pd.DataFrame({"shoppers": grouped.size(), "median_interactions": grouped["interactions"].median(),
                         "median_recency_days": grouped["recency_days"].median(),
                         "mean_rating": grouped["mean_rating"].mean(),
                         "five_star_share": grouped["five_star_share"].mean()}).reset_index()


def shoppers_per(column: pd.Series, segment_of_row: np.ndarray, users: pd.Series) -> pd.DataFrame:
    """segment, value, shoppers: distinct shoppers of each segment per value of `column` (an item, a category)."""
    pairs = pd.DataFrame({"segment": segment_of_row, "value": column.to_numpy(), "user": users.to_numpy()})
    return (pairs.dropna().drop_duplicates().groupby(["segment", "value"]).size().rename("shoppers").reset_index())


def profiles(shoppers: Shoppers, labels: np.ndarray, shopper_behaviour: pd.DataFrame, cfg: SegmentsParams,
             privacy: PrivacyParams) -> dict[str, Any]:
    """The published segments (size, share, behaviour, top items and categories), the segments' item
    popularity, and how much disclosure control held back."""
    table_seed, item_seed, category_seed = protected_seeds(cfg.seed, 3)
    table, suppressed = protect(segment_table(labels, shopper_behaviour), "shoppers", ["shoppers"], privacy, table_seed)
    table["share"] = table["shoppers"] / len(labels)
    published = set(table["segment"])
    inter = shoppers.interactions
    segment_of = pd.Series(labels, index=shoppers.users).reindex(inter["user"]).to_numpy()
    items, items_held = protect(shoppers_per(inter["item"], segment_of, inter["user"]), "shoppers", ["shoppers"],
                                privacy, item_seed)
    items = items[items["segment"].isin(published) & (items["shoppers"] > 0)].rename(columns={"value": "item"})
    items["share"] = items["shoppers"] / items.groupby("segment")["shoppers"].transform("sum")
    items = items.sort_values(["segment", "shoppers", "item"], ascending=[True, False, True], ignore_index=True)
    terms = most_specific_categories(shoppers.items.set_index("item")["categories"])
    item_terms = inter[["item", "user"]].assign(segment=segment_of).merge(terms.rename("value"), left_on="item",
                                                                         right_index=True)
    categories, _ = protect(shoppers_per(item_terms["value"], item_terms["segment"].to_numpy(), item_terms["user"]),
                            "shoppers", ["shoppers"], privacy, category_seed)
    categories = categories[categories["segment"].isin(published) & (categories["shoppers"] > 0)]
    titles = shoppers.items.set_index("item")["title"]
    segments = []
    for row in table.sort_values("segment").to_dict("records"):
        top = items[items["segment"] == row["segment"]].head(cfg.top_n)
        cats = categories[categories["segment"] == row["segment"]].nlargest(cfg.top_n, "shoppers")
        segments.append({**{k: _plain(v) for k, v in row.items()},
                         "top_items": [{"item": i, "title": _plain(titles.get(i)), "shoppers": int(s)}
                                       for i, s in zip(top["item"], top["shoppers"])],
                         "top_categories": [{"category": c, "shoppers": int(s)}
                                            for c, s in zip(cats["value"], cats["shoppers"])]})
    return {"segments": segments, "suppressed_segments": suppressed, "suppressed_item_counts": items_held,
            "popularity": items[["segment", "item", "shoppers", "share"]]}


def _plain(value: Any) -> Any:
    """numpy / pandas scalars -> JSON values (missing -> None)."""
    if value is None or (not isinstance(value, str) and pd.isna(value)):
        return None
    return value.item() if hasattr(value, "item") else value


# --------------------------------------------------------------------------- the report
def _figure(summary: dict) -> Figure:
    """Silhouette per k tried (the criterion; the chosen k marked), stability per k, published segment sizes."""
    fig = Figure(figsize=(12, 3.3))
    silhouette, stability, sizes = fig.subplots(1, 3)
    ks = [int(k) for k in summary["silhouette"]]
    for ax, key, title in ((silhouette, "silhouette", "silhouette (chooses k)"),
                           (stability, "stability_ari", "stability: ARI between two seeds")):
        ax.plot(ks, list(summary[key].values()), "o-")
        ax.axvline(summary["k"], color="grey", linestyle=":", label=f"chosen k = {summary['k']}")
        ax.set(title=title, xlabel="number of segments k", xticks=ks)
        ax.grid(alpha=0.3)
    silhouette.legend(fontsize="small")
    shown = summary["segments"]
    sizes.bar(range(len(shown)), [s["shoppers"] for s in shown])
    sizes.set_xticks(range(len(shown)), [str(s["segment"]) for s in shown])
    sizes.set(title="published segments", xlabel="segment", ylabel="shoppers")
    sizes.grid(alpha=0.3, axis="y")
    fig.tight_layout()
    return fig


# profile figures: column, heading, format, the phrase of a segment's profile ({} = the value)
FIGURES = (("median_interactions", "median interactions", ".0f", "median {} interactions"),
           ("median_recency_days", "median recency (days)", ".0f", "median {} days since the last one"),
           ("mean_rating", "mean rating", ".2f", "mean rating {}"),
           ("five_star_share", "5-star share", ".0%", "{} of ratings 5-star"))


def _profile_html(s: dict, figures: tuple, categories: bool) -> str:
    items = "".join(f"<tr><td>{html.escape(i['item'])}</td><td>{html.escape(i['title'] or '')}</td>"
                    f"<td>{i['shoppers']}</td></tr>" for i in s["top_items"])
    behaviour_text = ", ".join(phrase.format(format(s[c], fmt)) for c, _, fmt, phrase in figures if s[c] is not None)
    cats = ", ".join(f"{html.escape(c['category'])} ({c['shoppers']})" for c in s["top_categories"])
    cats_html = f"<p>Top categories (shoppers): {cats or 'none with enough shoppers to publish'}</p>" if categories else ""
    return (f"<section class='profile' id='segment-{s['segment']}'><h3>Segment {s['segment']}</h3>"
            f"<p>{s['shoppers']} shoppers ({s['share']:.1%}); {behaviour_text}.</p>{cats_html}"
            "<table><tr><th>top item</th><th>title</th><th>shoppers</th></tr>"
            f"{items or '<tr><td colspan=3>no item with enough shoppers to publish</td></tr>'}</table></section>")


def segments_html(summary: dict) -> str:
    p, k, shown = summary["privacy"], str(summary["k"]), summary["segments"]
    figures = tuple(f for f in FIGURES if any(s[f[0]] is not None for s in shown))   # the data's figures only
    rows = "".join(
        f"<tr><td><a href='#segment-{s['segment']}'>{s['segment']}</a></td><td>{s['shoppers']}</td>"
        f"<td>{s['share']:.1%}</td>" + "".join(f"<td>{'n/a' if s[c] is None else format(s[c], fmt)}</td>"
                                               for c, _, fmt, _ in figures) + "</tr>" for s in shown)
    features = ", ".join(f"{name} ({width})" for name, width in summary["features"]["used"].items())
    missing = "; ".join(summary["features"]["missing"] + ([] if summary["catalogue_has_categories"] else
                                                          ["categories: not in the catalogue"])) or "nothing"
    edge = (" It is the largest k tried: more segments may separate better (widen segments.k_candidates to look)."
            if summary["k_is_largest_tried"] else "")
    suppressed = (f"<p class='suppressed'><b>{p['suppressed_segments']} segment(s) suppressed</b>: fewer than "
                  f"{p['min_group_size']} shoppers (privacy.min_group_size); they are not shown.</p>"
                  if p["suppressed_segments"] else
                  f"<p class='suppressed'>No segment suppressed (all have {p['min_group_size']} shoppers or more).</p>")
    noise = (f"Published counts carry Laplace noise (epsilon {p['laplace_epsilon']})." if p["laplace_epsilon"] > 0
             else "Published counts are exact (privacy.laplace_epsilon = 0).")
    return html_page("Shopper segments", style="td,th{text-align:left}.profile{margin-top:1.5em}", body=(
            f"<h1>Shopper segments</h1><p>{summary['shoppers']} shoppers of the training split in "
            f"<b>{k} segments</b>, chosen as {html.escape(summary['criterion'])}: silhouette "
            f"{summary['silhouette'][k]:.3f}, stability {summary['stability_ari'][k]:.3f}.{edge}</p>"
            f"<p>Features (columns): {features}. Left out: {html.escape(missing)}.</p>{suppressed}"
            f"<p>Items and categories taken by fewer than {p['min_group_size']} shoppers of a segment are not shown "
            f"({p['suppressed_item_counts']} segment-item counts held back). {noise}</p>"
            f"<img alt='silhouette and stability per k; segment sizes' src='data:image/png;base64,"
            f"{figure_png_base64(_figure(summary))}'>"
            "<h2>Segments</h2><table><tr><th>segment</th><th>shoppers</th><th>share</th>"
            + "".join(f"<th>{heading}</th>" for _, heading, _, _ in figures) + f"</tr>{rows}</table>"
            "<h2>Profiles</h2>"
            + "".join(_profile_html(s, figures, summary["catalogue_has_categories"]) for s in shown)))


# --------------------------------------------------------------------------- the command
def segment_shoppers(params: Params) -> dict[str, Any]:
    """Segments of the training split's shoppers: segments.metrics_file, segments.report_file, and the
    assignment and segment popularity files; returns the summary (metrics_file's content)."""
    cfg = params.segments
    shoppers = load_shoppers(params)
    model, meta = load_checkpoint(final_model_path(params), select_device(params.train.device))
    known = pd.Series(shoppers.items.sort_values("item_idx")["item"].to_numpy())
    if meta["items"] != known.tolist():
        raise InterestError(f"{final_model_path(params)} was trained on another item index than {params.split.out_dir}: "
                            "retrain (`dvc repro train`) before segmenting")
    shopper_behaviour = behaviour(shoppers)
    blocks = feature_blocks(shopper_states(model, shoppers.histories, params.train.eval_batch_size),
                            mean_text(shoppers, load_item_embeddings(params)), shopper_behaviour)
    features, widths = feature_matrix(blocks, cfg)
    choice = choose_k(features, cfg)
    profiled = profiles(shoppers, choice.labels, shopper_behaviour, cfg, params.privacy)
    missing = [f"{name}: not in the data" for name in BLOCKS if name not in blocks]
    missing += [f"{name}: weight 0" for name in BLOCKS if name in blocks and name not in widths]
    summary = {
        "shoppers": len(shoppers.users), "k": choice.k, "criterion": choice.criterion,
        "k_is_largest_tried": choice.k == max(choice.silhouette) and len(choice.silhouette) > 1,
        "silhouette": {str(k): v for k, v in choice.silhouette.items()},
        "stability_ari": {str(k): v for k, v in choice.stability.items()},
        "features": {"used": widths, "missing": missing},
        "catalogue_has_categories": bool(shoppers.items["categories"].notna().any()),
        "privacy": {"min_group_size": params.privacy.min_group_size, "laplace_epsilon": params.privacy.laplace_epsilon,
                    "suppressed_segments": profiled["suppressed_segments"],
                    "suppressed_item_counts": profiled["suppressed_item_counts"]},
        "segments": profiled["segments"],
    }
    write_parquet(pd.DataFrame({"user": shoppers.users, "segment": choice.labels}), params.path(cfg.assignment_file))
    write_parquet(profiled["popularity"], params.path(cfg.popularity_file))
    write_json(summary, params.path(cfg.metrics_file))
    report = params.path(cfg.report_file)
    report.parent.mkdir(parents=True, exist_ok=True)
    report.write_text(segments_html(summary), encoding="utf-8")
    log.info("%d shoppers in %d segments (silhouette %.3f), %d suppressed: %s", summary["shoppers"], choice.k,
             choice.silhouette[choice.k], profiled["suppressed_segments"], report)
    return summary


def run(params: Params) -> dict[str, Any]:
    """The summary without each segment's top lists (they are in the report and the metrics)."""
    summary = segment_shoppers(params)
    listed = [{k: v for k, v in s.items() if k not in ("top_items", "top_categories")} for s in summary["segments"]]
    return {**summary, "segments": listed, "report": str(params.path(params.segments.report_file))}
