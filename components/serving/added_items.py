"""Products added after training (`interest add-items`), kept beside the model store: their ids
and text fields, and their text embeddings from the bundle's encoder. Stored by id, not by
item_idx, so a later model whose catalogue already holds them simply skips them."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from components.core.errors import DataSourceError
from components.core.io import read_parquet, write_npy, write_parquet

COLUMNS = ("item", "title", "brand", "categories", "description")


@dataclass(frozen=True)
class AddedItems:
    items: pd.DataFrame    # COLUMNS, in the order they were added
    vectors: np.ndarray    # [len(items), text_dim]


def _paths(folder: Path) -> tuple[Path, Path]:
    return folder / "items.parquet", folder / "text.npy"


def load_added(folder: Path) -> AddedItems | None:
    items_file, text_file = _paths(folder)
    if not items_file.is_file():
        return None
    return AddedItems(read_parquet(items_file), np.load(text_file))


def append_added(folder: Path, new: AddedItems) -> AddedItems:
    """The store with `new` appended (both files rewritten atomically)."""
    old = load_added(folder)
    merged = new if old is None else AddedItems(pd.concat([old.items, new.items], ignore_index=True),
                                                np.concatenate([old.vectors, new.vectors]))
    items_file, text_file = _paths(folder)
    write_npy(merged.vectors, text_file)
    write_parquet(merged.items, items_file)
    return merged


def read_new_items(file: Path) -> pd.DataFrame:
    """New products from a CSV or JSON-lines file, checked by new_items_table."""
    if not Path(file).is_file():
        raise DataSourceError(f"{file}: file not found")
    new = pd.read_json(file, lines=True) if str(file).endswith((".jsonl", ".json")) else pd.read_csv(file)
    return new_items_table(new, str(file))


def new_items_table(new: pd.DataFrame, source: str) -> pd.DataFrame:
    """An `item` id per row, unique, and any of the text fields; clear errors otherwise."""
    if new.empty:
        raise DataSourceError(f"{source}: no products given")
    if "item" not in new or new["item"].isna().any():
        raise DataSourceError(f"{source}: every row needs an `item` id (columns: {', '.join(COLUMNS)})")
    new = new.assign(item=new["item"].astype(str))
    if new["item"].duplicated().any():
        raise DataSourceError(f"{source}: item ids repeat: {new.loc[new['item'].duplicated(), 'item'].tolist()[:5]}")
    return new.reindex(columns=list(COLUMNS)).astype("string")
