"""The erasure register: shoppers who asked to be forgotten (`interest forget-user`, the service's
/forget_user). It holds their pseudonyms, never a raw id, and when each erasure was made; ingest
leaves these shoppers out of every new data version, so no later model learns from them. The
register's folder (privacy.erasure_dir) is a DVC dependency of ingest: an erasure is a new data
version."""
from __future__ import annotations

import time
from pathlib import Path

import pandas as pd

from components.core.io import read_json, write_json

REGISTER = "register.json"


def erased_shoppers(folder: Path) -> set[str]:
    path = folder / REGISTER
    return {entry["shopper"] for entry in read_json(path)} if path.is_file() else set()


def record_erasure(folder: Path, shopper: str, removed: dict[str, int]) -> dict:
    """Append the erasure (pseudonym, time, rows removed where) and return the entry."""
    path = folder / REGISTER
    entries = read_json(path) if path.is_file() else []
    entry = {"shopper": shopper, "at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "removed": removed}
    write_json([*entries, entry], path)
    return entry


def without_erased(table: pd.DataFrame, erased: set[str]) -> pd.DataFrame:
    """The rows of shoppers not erased (tables without a user column are returned as they are)."""
    if not erased or "user" not in table.columns:
        return table
    return table[~table["user"].isin(erased)].reset_index(drop=True)
