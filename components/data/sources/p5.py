"""The P5 / IDGenRec layout, as published for every Amazon category:
`<name>_user_sequence.txt` (`<user> <item_1> ... <item_n>`, oldest first) and, beside it,
`<name>_item_textual_ids.txt` (`<item> <short text>`, the item text IDGenRec derived from each
product's title, brand and categories). Either may be gzipped.
"""
from __future__ import annotations

from pathlib import Path

import pandas as pd

from components.data.sources.files import first_match, iter_lines, read_guarded
from components.data.sources.raw import RawTables, no_reviews

SEQUENCES = ("*user_sequence.txt.gz", "*user_sequence.txt")
TEXTUAL_IDS = ("*item_textual_ids.txt.gz", "*item_textual_ids.txt")


def read_user_sequences(path: Path) -> pd.DataFrame:
    """user, item, position (0 = oldest) of every line."""
    def reader(p: Path) -> pd.DataFrame:
        rows = []
        for _, line in iter_lines(p, f"read {p.name}"):
            user, *items = line.split()
            rows.extend((user, item, pos) for pos, item in enumerate(items))
        return pd.DataFrame(rows, columns=["user", "item", "position"])
    return read_guarded(path, reader)


def read_textual_ids(path: Path) -> pd.DataFrame:
    """item, title: a short title stand-in, the only text some mirrors have."""
    def reader(p: Path) -> pd.DataFrame:
        rows = []
        for _, line in iter_lines(p, f"read {p.name}"):
            item, _, text = line.rstrip("\n").partition(" ")
            rows.append((item, text.strip() or None))
        return pd.DataFrame(rows, columns=["item", "title"])
    return read_guarded(path, reader)


def read_p5_folder(folder: Path) -> RawTables | None:
    """The folder's sequences with the item text beside them; None when it holds no sequences."""
    seq_path = first_match(folder, *SEQUENCES)
    if seq_path is None:
        return None
    inter = read_user_sequences(seq_path).assign(timestamp=pd.NA, rating=pd.NA)
    files = {"format": "p5-sequences", "interactions": str(seq_path)}
    text_path = first_match(folder, *TEXTUAL_IDS)
    if text_path is not None:
        items = read_textual_ids(text_path)
        files["items"] = f"{text_path} (short title stand-in)"
    else:
        items = pd.DataFrame({"item": inter["item"].drop_duplicates()})
    return RawTables(inter, items, no_reviews(), files)
