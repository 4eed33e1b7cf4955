"""Raw shop files -> canonical typed tables: interactions, items, reviews.

Reads a dataset from the offline mirror in any of the formats it holds (LC-Rec JSON with index
maps, P5 user sequences, the original Amazon JSON lines / CSV reviews with product metadata) or
downloads the original public 2014 files. Fields a source lacks stay null and are reported in
the ingest summary, never invented. Shopper ids are pseudonymised here, so no raw id travels on.
"""
from __future__ import annotations

import ast
import gzip
import hashlib
import hmac
import json
import logging
import os
import urllib.error
import urllib.request
import zlib
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Iterator

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from components.config import Params
from components.errors import DataSourceError
from components.io import write_json, write_parquet

log = logging.getLogger(__name__)

INTERACTION_COLUMNS = {
    "user": "string", "item": "string", "timestamp": "Int64", "rating": "Float64", "position": "int32",
}
ITEM_COLUMNS = {
    "item": "string", "title": "string", "brand": "string", "categories": "string",
    "description": "string", "price": "Float64",
}
REVIEW_COLUMNS = {
    "user": "string", "item": "string", "rating": "Float64", "summary": "string",
    "text": "string", "timestamp": "Int64",
}
TABLES = ("interactions", "items", "reviews")


@dataclass(frozen=True)
class RawTables:
    """Tables as read, before pseudonymisation; `source` says which files and format."""

    interactions: pd.DataFrame
    items: pd.DataFrame
    reviews: pd.DataFrame
    source: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class IngestSummary:
    dataset: str
    format: str
    files: dict[str, str]
    rows: dict[str, int]
    users: int
    items: int
    missing_fields: dict[str, list[str]]
    outputs: dict[str, str]


# --------------------------------------------------------------------------- file reading
def _open_text(path: Path):
    return gzip.open(path, "rt", encoding="utf-8") if path.suffix == ".gz" else open(path, encoding="utf-8")


def _read_guarded(path: Path, reader):
    """Run reader(path), turning corrupt, truncated or mis-encoded files into one clear error."""
    try:
        return reader(path)
    except (EOFError, gzip.BadGzipFile, zlib.error, OSError) as exc:
        if isinstance(exc, FileNotFoundError):
            raise DataSourceError(f"{path}: file not found") from exc
        raise DataSourceError(
            f"{path} is truncated or not a valid gzip file ({exc}); copy it again or delete it so "
            "the original can be downloaded"
        ) from exc
    except UnicodeDecodeError as exc:
        raise DataSourceError(
            f"{path} is not UTF-8 text (byte {exc.start}: {exc.reason}); convert it to UTF-8"
        ) from exc


def _iter_lines(path: Path, desc: str) -> Iterator[tuple[int, str]]:
    with _open_text(path) as fh:
        for lineno, line in enumerate(tqdm(fh, desc=desc, unit=" lines", mininterval=2, leave=False), 1):
            if line.strip():
                yield lineno, line


def _parse_record(path: Path, lineno: int, line: str) -> dict:
    """One JSON-lines record; the 2014 metadata files use Python literals instead of JSON."""
    try:
        return json.loads(line)
    except json.JSONDecodeError:
        try:
            return ast.literal_eval(line)
        except (ValueError, SyntaxError) as exc:
            raise DataSourceError(f"{path}, line {lineno}: not a JSON or Python record ({exc})") from exc


def _read_json_gz(path: Path) -> dict:
    def reader(p: Path) -> dict:
        with _open_text(p) as fh:
            try:
                return json.load(fh)
            except json.JSONDecodeError as exc:
                raise DataSourceError(f"{p}: not valid JSON ({exc})") from exc
    return _read_guarded(path, reader)


def _read_tsv_map(path: Path) -> dict[str, str]:
    df = _read_guarded(path, lambda p: pd.read_csv(p, sep="\t", dtype=str, encoding="utf-8"))
    return dict(zip(df.iloc[:, 0], df.iloc[:, 1]))


def read_lcrec_sequences(inter_path: Path, user_map: dict[str, str] | None,
                         item_map: dict[str, str] | None) -> pd.DataFrame:
    """LC-Rec `*.inter.json`: user index -> item indices, oldest first; maps give raw ids."""
    raw = _read_json_gz(inter_path)
    rows = [(uid, iid, pos) for uid, seq in raw.items() for pos, iid in enumerate(seq)]
    df = pd.DataFrame(rows, columns=["user", "item", "position"])
    df["item"] = df["item"].astype(str)
    if user_map is not None:
        df["user"] = df["user"].map(user_map)
    if item_map is not None:
        df["item"] = df["item"].map(item_map)
    if df[["user", "item"]].isna().any().any():
        raise DataSourceError(f"{inter_path}: some user or item indices are missing from the index maps")
    return df


def read_user_sequences(path: Path) -> pd.DataFrame:
    """P5 `user_sequence.txt`: `<user> <item_1> ... <item_n>` per line, oldest first."""
    def reader(p: Path) -> pd.DataFrame:
        rows = []
        for _, line in _iter_lines(p, f"read {p.name}"):
            user, *items = line.split()
            rows.extend((user, item, pos) for pos, item in enumerate(items))
        return pd.DataFrame(rows, columns=["user", "item", "position"])
    return _read_guarded(path, reader)


def read_textual_ids(path: Path) -> pd.DataFrame:
    """IDGenRec `<asin> <short text>` lines: a short title stand-in, the only text some mirrors have."""
    def reader(p: Path) -> pd.DataFrame:
        rows = []
        for _, line in _iter_lines(p, f"read {p.name}"):
            item, _, text = line.rstrip("\n").partition(" ")
            rows.append((item, text.strip() or None))
        return pd.DataFrame(rows, columns=["item", "title"])
    return _read_guarded(path, reader)


def read_lcrec_items(path: Path, item_map: dict[str, str] | None) -> pd.DataFrame:
    raw = _read_json_gz(path)
    df = pd.DataFrame.from_dict(raw, orient="index")
    df.index.name = "item"
    df = df.reset_index()
    if item_map is not None:
        df["item"] = df["item"].map(item_map)
    return df


def _join_text(value) -> str | None:
    """Metadata lists (nested category paths, description paragraphs) -> one string."""
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return None
    if isinstance(value, (list, tuple)):
        parts = [_join_text(v) for v in value]
        sep = " | " if any(isinstance(v, (list, tuple)) for v in value) else ", "
        return sep.join(p for p in parts if p) or None
    return str(value)


def _parse_price(value) -> float | None:
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
            df = pd.DataFrame([_parse_record(p, n, line) for n, line in _iter_lines(p, f"read {p.name}")])
        missing = {"reviewerID", "asin"} - set(df.columns)
        if missing:
            raise DataSourceError(f"{p}: no {sorted(missing)} field; is this an Amazon reviews file?")
        return df
    df = _read_guarded(path, reader)
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
        for n, line in _iter_lines(p, f"read {p.name}"):
            rec = _parse_record(p, n, line)
            rows.append({
                "item": rec.get("asin"),
                "title": _join_text(rec.get("title")),
                "brand": _join_text(rec.get("brand")),
                "categories": _join_text(rec.get("categories", rec.get("category"))),
                "description": _join_text(rec.get("description")),
                "price": _parse_price(rec.get("price")),
            })
        return pd.DataFrame(rows)
    return _read_guarded(path, reader)


# --------------------------------------------------------------------------- sources
def _download(url: str, dest: Path, timeout_s: float) -> Path:
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


def original_file_names(dataset: str) -> dict[str, str]:
    return {"reviews": f"reviews_{dataset}_5.json.gz", "meta": f"meta_{dataset}.json.gz"}


def _first(folder: Path, *patterns: str) -> Path | None:
    for pattern in patterns:
        hits = sorted(folder.glob(pattern))
        if hits:
            return hits[0]
    return None


def _read_original(reviews_path: Path, meta_path: Path | None) -> RawTables:
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


def _read_lcrec_folder(folder: Path, inter_path: Path) -> RawTables:
    user_idx = _first(folder, "*user_index.tsv.gz", "*user_index.tsv")
    item_idx = _first(folder, "*item_index.tsv.gz", "*item_index.tsv")
    item_map = _read_tsv_map(item_idx) if item_idx else None
    inter = read_lcrec_sequences(inter_path, _read_tsv_map(user_idx) if user_idx else None, item_map)
    files = {"interactions": str(inter_path)}
    seq_path = _first(folder, "*user_sequence.txt.gz", "*user_sequence.txt")
    if seq_path is not None and user_idx is not None:
        other = read_user_sequences(seq_path)
        if not other.reset_index(drop=True).equals(inter[["user", "item", "position"]].reset_index(drop=True)):
            raise DataSourceError(f"{inter_path} and {seq_path} disagree: the mirror is inconsistent")
        files["sequences_cross_check"] = str(seq_path)
    item_json = _first(folder, "*.item.json.gz", "*.item.json")
    text_path = _first(folder, "*item_textual_ids.txt.gz", "*item_textual_ids.txt")
    if item_json is not None:
        items = read_lcrec_items(item_json, item_map)
        files["items"] = str(item_json)
    elif text_path is not None:
        items = read_textual_ids(text_path)
        files["items"] = f"{text_path} (short title stand-in)"
    else:
        items = pd.DataFrame({"item": inter["item"].drop_duplicates()})
    inter = inter.assign(timestamp=pd.NA, rating=pd.NA)
    return RawTables(inter, items, pd.DataFrame(columns=list(REVIEW_COLUMNS)), {"format": "lcrec", **files})


def _read_sequence_folder(seq_path: Path) -> RawTables:
    inter = read_user_sequences(seq_path).assign(timestamp=pd.NA, rating=pd.NA)
    items = pd.DataFrame({"item": inter["item"].drop_duplicates()})
    return RawTables(inter, items, pd.DataFrame(columns=list(REVIEW_COLUMNS)),
                     {"format": "p5-sequences", "interactions": str(seq_path)})


def read_dataset(params: Params) -> RawTables:
    """Find the dataset: mirror (richest format first), then a download of the original files."""
    data = params.data
    names = original_file_names(data.dataset)
    mirror = params.path(data.mirror_dir)
    folder = mirror / data.mirror_folders.get(data.dataset, data.dataset)
    download_dir = params.path(data.download.dir)
    for place in (folder, download_dir):
        reviews = _first(place, names["reviews"], "*_5.json.gz", "*reviews*.csv.gz")
        if reviews is not None:
            meta = place / names["meta"]
            return _read_original(reviews, meta if meta.is_file() else None)
    inter = _first(folder, f"{data.dataset}.inter.json.gz", "*.inter.json.gz", "*.inter.json")
    if inter is not None:
        return _read_lcrec_folder(folder, inter)
    seq = _first(folder, "*user_sequence.txt.gz", "*user_sequence.txt")
    if seq is not None:
        return _read_sequence_folder(seq)
    urls = {k: f"{data.download.base_url.rstrip('/')}/{v}" for k, v in names.items()}
    reason = "downloads are disabled (data.download.enabled: false)"
    if data.download.enabled:
        try:
            reviews = _download(urls["reviews"], download_dir / names["reviews"], data.download.timeout_s)
            meta = _download(urls["meta"], download_dir / names["meta"], data.download.timeout_s)
            return _read_original(reviews, meta)
        except (urllib.error.URLError, OSError) as exc:
            reason = f"the download failed ({exc})"
    raise DataSourceError(
        f"dataset '{data.dataset}' not found. Either put its files in the mirror folder {folder} "
        f"(set data.mirror_dir or INTEREST__DATA__MIRROR_DIR), or let ingestion download "
        f"{urls['reviews']} and {urls['meta']} into {download_dir} — {reason}."
    )


# --------------------------------------------------------------------------- transform
def pseudonymise(ids: pd.Series, key: bytes, length: int) -> pd.Series:
    """Keyed HMAC-SHA256: stable for one key, not reversible or joinable without it."""
    uniq = ids.dropna().unique()
    mapping = {u: hmac.new(key, str(u).encode("utf-8"), hashlib.sha256).hexdigest()[:length] for u in uniq}
    return ids.map(mapping).astype("string")


def pseudonym_key(params: Params, environ: dict[str, str] | None = None) -> bytes:
    env = os.environ if environ is None else environ
    key = env.get(params.ingest.pseudonym_key_env)
    if not key:
        log.warning("%s is not set: using the documented development key; set it in production",
                    params.ingest.pseudonym_key_env)
        key = params.ingest.pseudonym_dev_key
    return key.encode("utf-8")


def _typed(df: pd.DataFrame, columns: dict[str, str]) -> pd.DataFrame:
    out = pd.DataFrame(index=df.index)
    for name, dtype in columns.items():
        col = df[name] if name in df else pd.Series(pd.NA, index=df.index)
        if dtype == "string":
            col = col.astype("string").str.strip().replace("", pd.NA)
        elif dtype in ("Int64", "Float64"):
            col = pd.to_numeric(col, errors="coerce").astype(dtype)
        out[name] = col.astype(dtype)
    return out.reset_index(drop=True)


def sample_users(inter: pd.DataFrame, n: int, seed: int) -> pd.DataFrame:
    users = np.sort(inter["user"].dropna().unique())
    if n <= 0 or n >= len(users):
        return inter
    keep = np.random.default_rng(seed).choice(users, size=n, replace=False)
    return inter[inter["user"].isin(set(keep))]


def _missing_fields(df: pd.DataFrame) -> list[str]:
    return [c for c in df.columns if len(df) == 0 or df[c].isna().all()]


def canonical_tables(raw: RawTables, params: Params, key: bytes) -> dict[str, pd.DataFrame]:
    inter = sample_users(raw.interactions, params.data.sample_users, params.data.seed)
    reviews = raw.reviews
    items = raw.items
    if params.data.sample_users:
        kept = set(inter["item"])
        items = items[items["item"].isin(kept)]
        reviews = reviews[reviews["user"].isin(set(inter["user"]))]
    length = params.ingest.pseudonym_length
    inter = inter.assign(user=pseudonymise(inter["user"], key, length))
    reviews = reviews.assign(user=pseudonymise(reviews["user"].astype("string"), key, length))
    return {
        "interactions": _typed(inter, INTERACTION_COLUMNS),
        "items": _typed(items, ITEM_COLUMNS),
        "reviews": _typed(reviews, REVIEW_COLUMNS),
    }


def ingest(params: Params) -> IngestSummary:
    """Read the configured dataset and write the canonical Parquet tables to ingest.out_dir."""
    raw = read_dataset(params)
    tables = canonical_tables(raw, params, pseudonym_key(params))
    out_dir = params.path(params.ingest.out_dir)
    outputs = {name: str(write_parquet(df, out_dir / f"{name}.parquet")) for name, df in tables.items()}
    missing = {name: _missing_fields(df) for name, df in tables.items()}
    for name, cols in missing.items():
        if cols:
            log.warning("%s: the source has no %s; later steps work without them", name, ", ".join(cols))
    inter = tables["interactions"]
    summary = IngestSummary(
        dataset=params.data.dataset,
        format=raw.source.get("format", "?"),
        files={k: v for k, v in raw.source.items() if k != "format"},
        rows={name: len(df) for name, df in tables.items()},
        users=int(inter["user"].nunique()),
        items=int(inter["item"].nunique()),
        missing_fields=missing,
        outputs=outputs,
    )
    write_json(asdict(summary), out_dir / "summary.json")
    log.info("ingested %s (%s): %s", summary.dataset, summary.format, summary.rows)
    return summary
