"""`interest forget-user ID`: erase a shopper from every store the platform keeps.

The raw shop id is pseudonymised as at ingestion and the service boundary, then the shopper's
rows go from the feedback store (events, served slates) and from every Parquet table of the
data versions, monitoring windows and segment assignment that has a user column; the erasure is
recorded in the register (privacy.erasure_dir), which ingest reads, so the next data version and
every model trained on it leave the shopper out. Model versions registered before the erasure
learnt from the shopper's history: the entry names them, and `dvc repro` replaces them.
"""
from __future__ import annotations

import logging
from pathlib import Path

from components.core.config.schema import Params
from components.core.io import read_parquet, write_parquet
from components.data.erasure import record_erasure, without_erased
from components.data.ingest import pseudonym, pseudonym_key
from components.feedback.store import open_store

log = logging.getLogger(__name__)


def shopper_tables(params: Params) -> list[Path]:
    """Every Parquet file that may hold shoppers' rows."""
    folders = [params.ingest.out_dir, params.validation.out_dir, params.split.out_dir, params.ingest.feedback_dir,
               params.monitor.out_dir]
    files = [p for folder in folders for p in sorted(params.path(folder).rglob("*.parquet"))]
    return files + [p for p in [params.path(params.segments.assignment_file)] if p.is_file()]


def scrub_tables(paths: list[Path], shopper: str) -> dict[str, int]:
    """Rewrite each table without the shopper's rows; rows removed per file that had any."""
    removed = {}
    for path in paths:
        table = read_parquet(path)
        kept = without_erased(table, {shopper})
        if len(kept) < len(table):
            write_parquet(kept, path)
            removed[str(path)] = len(table) - len(kept)
    return removed


def forget_user(params: Params, shop_id: str | None = None, shopper: str | None = None) -> dict:
    """Erase by the shop's raw id or by the pseudonym; returns the register entry."""
    if (shop_id is None) == (shopper is None):
        raise ValueError("give the shop's id or the pseudonym, not both")
    who = shopper or pseudonym(shop_id, pseudonym_key(params), params.ingest.pseudonym_length)
    store = open_store(params)
    try:
        store_rows = store.forget(who)
    finally:
        store.close()
    files = scrub_tables(shopper_tables(params), who)
    entry = record_erasure(params.path(params.privacy.erasure_dir), who,
                           {"feedback_store": store_rows, "files": files})
    log.info("forgot shopper %s: %d events and %d slates from the feedback store, rows from %d files", who,
             store_rows["events"], store_rows["slates"], len(files))
    return entry
