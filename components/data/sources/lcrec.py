"""The LC-Rec layout: `<name>.inter.json` (user index -> item indices, oldest first), with the
optional index maps `*user_index.tsv` / `*item_index.tsv` (index -> raw id), item text in
`<name>.item.json` (index -> {title, description, brand, categories}) or else the P5 textual ids,
and a P5 `user_sequence.txt` that, when present with the user map, must agree with it.
"""
from __future__ import annotations

from pathlib import Path

import pandas as pd

from components.core.errors import DataSourceError
from components.data.sources.files import first_match, read_json_file, read_tsv_map
from components.data.sources.p5 import SEQUENCES, TEXTUAL_IDS, read_textual_ids, read_user_sequences
from components.data.sources.raw import RawTables, no_reviews


def interactions_file(folder: Path, dataset: str) -> Path | None:
    return first_match(folder, f"{dataset}.inter.json.gz", "*.inter.json.gz", "*.inter.json")


def read_lcrec_sequences(inter_path: Path, user_map: dict[str, str] | None,
                         item_map: dict[str, str] | None) -> pd.DataFrame:
    """user, item, position; the maps turn indices into raw ids."""
    raw = read_json_file(inter_path)
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


def read_lcrec_items(path: Path, item_map: dict[str, str] | None) -> pd.DataFrame:
    raw = read_json_file(path)
    df = pd.DataFrame.from_dict(raw, orient="index")
    df.index.name = "item"
    df = df.reset_index()
    if item_map is not None:
        df["item"] = df["item"].map(item_map)
    return df


def read_lcrec_folder(folder: Path, inter_path: Path) -> RawTables:
    user_idx = first_match(folder, "*user_index.tsv.gz", "*user_index.tsv")
    item_idx = first_match(folder, "*item_index.tsv.gz", "*item_index.tsv")
    item_map = read_tsv_map(item_idx) if item_idx else None
    inter = read_lcrec_sequences(inter_path, read_tsv_map(user_idx) if user_idx else None, item_map)
    files = {"format": "lcrec", "interactions": str(inter_path)}
    seq_path = first_match(folder, *SEQUENCES)
    if seq_path is not None and user_idx is not None:
        other = read_user_sequences(seq_path)
        if not other.reset_index(drop=True).equals(inter[["user", "item", "position"]].reset_index(drop=True)):
            raise DataSourceError(f"{inter_path} and {seq_path} disagree: the mirror is inconsistent")
        files["sequences_cross_check"] = str(seq_path)
    item_json = first_match(folder, "*.item.json.gz", "*.item.json")
    text_path = first_match(folder, *TEXTUAL_IDS)
    if item_json is not None:
        items = read_lcrec_items(item_json, item_map)
        files["items"] = str(item_json)
    elif text_path is not None:
        items = read_textual_ids(text_path)
        files["items"] = f"{text_path} (short title stand-in)"
    else:
        items = pd.DataFrame({"item": inter["item"].drop_duplicates()})
    inter = inter.assign(timestamp=pd.NA, rating=pd.NA)
    return RawTables(inter, items, no_reviews(), files)
