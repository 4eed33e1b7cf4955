"""The erasure register: shoppers who asked to be forgotten (`interest forget-user`, the service's
/forget_user). It holds their pseudonyms, never a raw id, and when each erasure was made; ingest
leaves these shoppers out of every new data version, so no later model learns from them. The
register's folder (privacy.erasure_dir) is a DVC dependency of ingest: an erasure is a new data
version."""
from __future__ import annotations

import fcntl
import os
import time
from pathlib import Path

import pandas as pd

from components.core.io import read_json, write_json

REGISTER = "register.json"


def erased_shoppers(folder: Path) -> set[str]:
    path = folder / REGISTER
    return {entry["shopper"] for entry in read_json(path)} if path.is_file() else set()


def record_erasure(folder: Path, shopper: str, removed: dict[str, int]) -> dict:
    """Append the erasure (pseudonym, time, rows removed where) and return the entry. Several
    service workers may erase at once: the read and the write hold an exclusive lock of the
    folder, so no entry is lost."""
    path = folder / REGISTER
    folder.mkdir(parents=True, exist_ok=True)
    lock = os.open(folder, os.O_RDONLY)          # the folder's own lock: no lock file in a DVC dependency
    try:
        fcntl.flock(lock, fcntl.LOCK_EX)
        entries = read_json(path) if path.is_file() else []
        entry = {"shopper": shopper, "at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "removed": removed}
        write_json([*entries, entry], path)
    finally:
        os.close(lock)
    return entry


class ErasedShoppers:
    """The register's shoppers as a set that reads the register again whenever it changed (one
    stat a look): an erasure at one service worker reaches every other at its next request."""

    def __init__(self, folder: Path):
        self.path, self._mtime, self._shoppers = folder / REGISTER, None, set()

    def __contains__(self, shopper: object) -> bool:
        mtime = self.path.stat().st_mtime_ns if self.path.is_file() else None
        if mtime != self._mtime:
            self._shoppers, self._mtime = erased_shoppers(self.path.parent), mtime
        return shopper in self._shoppers


def without_erased(table: pd.DataFrame, erased: set[str]) -> pd.DataFrame:
    """The rows of shoppers not erased (tables without a user column are returned as they are)."""
    if not erased or "user" not in table.columns:
        return table
    return table[~table["user"].isin(erased)].reset_index(drop=True)
