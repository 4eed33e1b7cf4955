"""The original Amazon review data layout (2014 and 2018 editions): reviews as JSON lines
(`reviews_<Dataset>_5.json.gz`, `<Dataset>_5.json.gz`) or the Kaggle CSV conversion, with the
product metadata `meta_<Dataset>.json.gz` beside them (titles, brands, categories, descriptions,
prices); and the download of the original public files where the internet is reachable.
"""
from __future__ import annotations

import logging
import os
import urllib.request
from pathlib import Path

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from components.core.errors import DataSourceError
from components.data.sources.files import first_match, iter_lines, parse_record, read_guarded
from components.data.sources.raw import RawTables

log = logging.getLogger(__name__)


def original_file_names(dataset: str) -> dict[str, str]:
    """The names the public 2014 files have at data.download.base_url."""
    return {"reviews": f"reviews_{dataset}_5.json.gz", "meta": f"meta_{dataset}.json.gz"}


def reviews_file(folder: Path, dataset: str) -> Path | None:
    return first_match(folder, original_file_names(dataset)["reviews"], "*_5.json.gz", "*reviews*.csv.gz")


def meta_file(folder: Path, dataset: str) -> Path | None:
    return first_match(folder, original_file_names(dataset)["meta"], "meta_*.json.gz", "meta_*.json")


def join_text(value) -> str | None:
    """Metadata lists (nested category paths, description paragraphs) -> one string."""
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return None
    if isinstance(value, (list, tuple)):
        parts = [join_text(v) for v in value]
        sep = " | " if any(isinstance(v, (list, tuple)) for v in value) else ", "
        return sep.join(p for p in parts if p) or None
    return str(value)


def parse_price(value) -> float | None:
    if value is None or value == "":
        return None
    if isinstance(value, (int, float)):
        return float(value)
    try:
        return float(str(value).replace("$", "").replace(",", "").split("-")[0].strip())
    except ValueError:
        return None


def read_amazon_reviews(path: Path) -> pd.DataFrame:
    """Original Amazon reviews (2014 or 2018 JSON lines, or the Kaggle CSV conversion)."""
    def reader(p: Path) -> pd.DataFrame:
        if p.name.endswith((".csv", ".csv.gz")):
            df = pd.read_csv(p, dtype={"reviewerID": str, "asin": str}, keep_default_na=False,
                             encoding="utf-8")
        else:
            df = pd.DataFrame([parse_record(p, n, line) for n, line in iter_lines(p, f"read {p.name}")])
        missing = {"reviewerID", "asin"} - set(df.columns)
        if missing:
            raise DataSourceError(f"{p}: no {sorted(missing)} field; is this an Amazon reviews file?")
        return df
    df = read_guarded(path, reader)
    out = pd.DataFrame({
        "user": df["reviewerID"],
        "item": df["asin"],
        "rating": pd.to_numeric(df.get("overall"), errors="coerce") if "overall" in df else None,
        "summary": df.get("summary"),
        "text": df.get("reviewText"),
        "timestamp": pd.to_numeric(df.get("unixReviewTime"), errors="coerce") if "unixReviewTime" in df else None,
    })
    return out.replace({"summary": {"": None}, "text": {"": None}})


def read_amazon_meta(path: Path) -> pd.DataFrame:
    def reader(p: Path) -> pd.DataFrame:
        rows = []
        for n, line in iter_lines(p, f"read {p.name}"):
            rec = parse_record(p, n, line)
            rows.append({
                "item": rec.get("asin"),
                "title": join_text(rec.get("title")),
                "brand": join_text(rec.get("brand")),
                "categories": join_text(rec.get("categories", rec.get("category"))),
                "description": join_text(rec.get("description")),
                "price": parse_price(rec.get("price")),
            })
        return pd.DataFrame(rows)
    return read_guarded(path, reader)


def read_original(reviews_path: Path, meta_path: Path | None) -> RawTables:
    """Interactions ordered by review time per user (file order breaks ties); the catalogue is
    the metadata of reviewed products, or their bare ids without a metadata file."""
    reviews = read_amazon_reviews(reviews_path)
    order = reviews.assign(_row=np.arange(len(reviews))).sort_values(
        ["user", "timestamp", "_row"], kind="stable", na_position="last")
    inter = order[["user", "item", "timestamp", "rating"]].copy()
    inter["position"] = inter.groupby("user").cumcount()
    if meta_path is not None:
        items = read_amazon_meta(meta_path)
        items = items[items["item"].isin(set(reviews["item"]))]
    else:
        items = pd.DataFrame({"item": reviews["item"].drop_duplicates()})
    files = {"reviews": str(reviews_path), **({"meta": str(meta_path)} if meta_path else {})}
    return RawTables(inter, items, reviews, {"format": "amazon-reviews", **files})


def download(url: str, dest: Path, timeout_s: float) -> Path:
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_suffix(dest.suffix + ".part")
    log.info("downloading %s", url)
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as resp, open(tmp, "wb") as fh:
            total = int(resp.headers.get("Content-Length") or 0) or None
            with tqdm(total=total, unit="B", unit_scale=True, desc=dest.name, leave=False) as bar:
                while chunk := resp.read(1 << 20):
                    fh.write(chunk)
                    bar.update(len(chunk))
        os.replace(tmp, dest)
    finally:
        tmp.unlink(missing_ok=True)
    return dest
