"""Raw shop files -> canonical typed tables: interactions, items, reviews.

The source readers (components.data.sources) find and read the dataset in whichever layout the
mirror holds, or download it. Fields a source lacks stay null and are reported in the ingest
summary, never invented. Shopper ids are pseudonymised here, so no raw id travels on. The
feedback accepted by monitoring (ingest.feedback_dir, shoppers already pseudonymised) follows each
shopper's history.
"""
from __future__ import annotations

import hashlib
import hmac
import logging
import os
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from components.core.config.schema import Params
from components.core.io import write_json, write_parquet
from components.data.erasure import erased_shoppers, without_erased
from components.data.feedback_data import append_feedback, feedback_version, read_feedback
from components.data.sources.locate import read_dataset
from components.data.sources.raw import RawTables

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
    feedback: dict   # the accepted feedback folder's version and what of it was appended
    erased_shoppers: int   # shoppers of the erasure register left out (privacy.erasure_dir)


# --------------------------------------------------------------------------- transform
def pseudonym(raw_id: str, key: bytes, length: int) -> str:
    """Keyed HMAC-SHA256: stable for one key, not reversible or joinable without it. The service
    applies it to the shop's ids, so they meet the ingested histories without being stored."""
    return hmac.new(key, str(raw_id).encode("utf-8"), hashlib.sha256).hexdigest()[:length]


def pseudonymise(ids: pd.Series, key: bytes, length: int) -> pd.Series:
    uniq = ids.dropna().unique()
    mapping = {u: pseudonym(u, key, length) for u in uniq}
    return ids.map(mapping).astype("string")


def pseudonym_key(params: Params, environ: dict[str, str] | None = None) -> bytes:
    env = os.environ if environ is None else environ
    key = env.get(params.ingest.pseudonym_key_env)
    if not key:
        log.warning("%s is not set: using the documented development key; set it in production",
                    params.ingest.pseudonym_key_env)
        key = params.ingest.pseudonym_dev_key
    return key.encode("utf-8")


def shop_ids(params: Params, pseudonyms: set[str], environ: dict[str, str] | None = None) -> dict[str, str]:
    """The raw shop ids (as the front end sends them) of the given pseudonymised shoppers, each
    with its pseudonym, in the data's order: what a client of the service would send."""
    key, length = pseudonym_key(params, environ), params.ingest.pseudonym_length
    raw = pd.unique(read_dataset(params).interactions["user"].astype(str))
    return {r: p for r in raw if (p := pseudonym(r, key, length)) in pseudonyms}


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


def with_feedback(tables: dict[str, pd.DataFrame], folder: Path) -> tuple[dict[str, pd.DataFrame], dict]:
    """The tables with the accepted feedback in folder appended, and the feedback's version."""
    version = feedback_version(folder)
    if not version["windows"]:
        return tables, {**version, "appended": 0}
    feedback, feedback_items = read_feedback(folder)
    inter, items, counts = append_feedback(tables["interactions"], tables["items"], feedback, feedback_items)
    return ({**tables, "interactions": _typed(inter, INTERACTION_COLUMNS), "items": _typed(items, ITEM_COLUMNS)},
            {**version, **counts})


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
    tables, feedback = with_feedback(canonical_tables(raw, params, pseudonym_key(params)),
                                     params.path(params.ingest.feedback_dir))
    erased = erased_shoppers(params.path(params.privacy.erasure_dir))
    tables = {name: without_erased(df, erased) for name, df in tables.items()}
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
        feedback=feedback,
        erased_shoppers=len(erased),
    )
    write_json(asdict(summary), out_dir / "summary.json")
    log.info("ingested %s (%s): %s", summary.dataset, summary.format, summary.rows)
    return summary


def run(params: Params) -> dict:
    """Pipeline step `ingest`."""
    return asdict(ingest(params))
