"""Every source layout and the original Amazon record formats, on a few hand-written files."""
from __future__ import annotations

import gzip
import json
from pathlib import Path

import pandas as pd
import pytest

from components.core.errors import DataSourceError
from components.data.ingest import pseudonymise
from components.data.sources.amazon import join_text, parse_price, read_amazon_reviews, read_original
from components.data.sources.files import parse_record
from components.data.sources.lcrec import read_lcrec_folder
from components.data.sources.p5 import read_p5_folder


def test_records_are_json_or_python_literals(tmp_path):
    assert parse_record(tmp_path, 1, '{"asin": "A1"}') == {"asin": "A1"}
    assert parse_record(tmp_path, 2, "{'asin': 'A1', 'price': 3.5}") == {"asin": "A1", "price": 3.5}
    with pytest.raises(DataSourceError, match="line 3: not a JSON or Python record"):
        parse_record(tmp_path, 3, "{asin: A1")


@pytest.mark.parametrize("raw, price", [("$1,234.50", 1234.5), ("$5.00 - $9.00", 5.0), (7, 7.0), ("", None),
                                         ("n/a", None)])
def test_prices(raw, price):
    assert parse_price(raw) == price


def test_category_paths_are_joined():
    assert join_text([["Beauty", "Hair"], ["Beauty", "Skin"]]) == "Beauty, Hair | Beauty, Skin"
    assert join_text(["a", None, "b"]) == "a, b"
    assert join_text(float("nan")) is None


def test_reviews_map_to_canonical_fields(tmp_path):
    path = tmp_path / "reviews_X_5.json.gz"
    records = [{"reviewerID": "U1", "asin": "A1", "overall": 4.0, "reviewText": "", "summary": "ok",
                "unixReviewTime": 1400000000}]
    path.write_bytes(gzip.compress("\n".join(json.dumps(r) for r in records).encode()))
    df = read_amazon_reviews(path)
    assert df.iloc[0].to_dict() == {"user": "U1", "item": "A1", "rating": 4.0, "summary": "ok", "text": None,
                                    "timestamp": 1400000000}


def test_reviews_without_ids_are_refused(tmp_path):
    path = tmp_path / "reviews_X_5.json.gz"
    path.write_bytes(gzip.compress(b'{"overall": 5.0}\n'))
    with pytest.raises(DataSourceError, match=r"no \['asin', 'reviewerID'\] field"):
        read_amazon_reviews(path)


def test_pseudonyms_are_stable_and_keyed():
    ids = pd.Series(["U1", "U2", "U1", None])
    a, b = pseudonymise(ids, b"k1", 16), pseudonymise(ids, b"k2", 16)
    assert a[0] == a[2] != a[1] and pd.isna(a[3]) and len(a[0]) == 16
    assert a[0] != b[0] and "U1" not in set(a.dropna())


def write_gz(path: Path, text: str) -> Path:
    path.write_bytes(gzip.compress(text.encode("utf-8")))
    return path


def test_amazon_layout_reads_reviews_and_product_metadata(tmp_path):
    reviews = write_gz(tmp_path / "reviews_X_5.json.gz", "\n".join(json.dumps(r) for r in [
        {"reviewerID": "U1", "asin": "B", "overall": 5.0, "unixReviewTime": 20},
        {"reviewerID": "U1", "asin": "A", "overall": 3.0, "unixReviewTime": 10}]))
    meta = write_gz(tmp_path / "meta_X.json.gz", "\n".join([
        "{'asin': 'A', 'title': 'Lipstick', 'categories': [['Beauty', 'Lips']], 'price': '$4.50'}",
        "{'asin': 'Z', 'title': 'never reviewed'}"]))
    raw = read_original(reviews, meta)
    assert raw.interactions[["item", "position"]].values.tolist() == [["A", 0], ["B", 1]]   # by review time
    assert raw.items["item"].tolist() == ["A"]                                             # reviewed products only
    assert raw.items.iloc[0][["title", "categories", "price"]].tolist() == ["Lipstick", "Beauty, Lips", 4.5]
    assert raw.source == {"format": "amazon-reviews", "reviews": str(reviews), "meta": str(meta)}


def test_lcrec_layout_maps_indices_and_reads_item_text(tmp_path):
    write_gz(tmp_path / "X.inter.json.gz", json.dumps({"0": [1, 0], "1": [0]}))
    write_gz(tmp_path / "x_user_index.tsv.gz", "user_index\treviewer_id\n0\tU1\n1\tU2\n")
    write_gz(tmp_path / "x_item_index.tsv.gz", "item_index\tasin\n0\tA\n1\tB\n")
    write_gz(tmp_path / "x_user_sequence.txt.gz", "U1 B A\nU2 A\n")
    write_gz(tmp_path / "X.item.json.gz", json.dumps({"0": {"title": "Lipstick"}, "1": {"title": "Shampoo"}}))
    raw = read_lcrec_folder(tmp_path, tmp_path / "X.inter.json.gz")
    assert raw.interactions[["user", "item", "position"]].values.tolist() == [["U1", "B", 0], ["U1", "A", 1],
                                                                             ["U2", "A", 0]]
    assert dict(zip(raw.items["item"], raw.items["title"])) == {"A": "Lipstick", "B": "Shampoo"}
    assert set(raw.source) == {"format", "interactions", "sequences_cross_check", "items"}
    write_gz(tmp_path / "x_user_sequence.txt.gz", "U1 A B\nU2 A\n")
    with pytest.raises(DataSourceError, match="disagree"):
        read_lcrec_folder(tmp_path, tmp_path / "X.inter.json.gz")


def test_p5_layout_reads_sequences_and_the_item_text_beside_them(tmp_path):
    assert read_p5_folder(tmp_path) is None
    write_gz(tmp_path / "toys_user_sequence.txt.gz", "U1 A B C\nU2 C A\n")
    raw = read_p5_folder(tmp_path)
    assert raw.items["item"].tolist() == ["A", "B", "C"] and "title" not in raw.items   # ids only: no text file
    write_gz(tmp_path / "toys_item_textual_ids.txt.gz", "A red lipstick\nB \nC sulfate free shampoo\n")
    raw = read_p5_folder(tmp_path)
    assert raw.interactions[["user", "item", "position"]].values.tolist()[:3] == [["U1", "A", 0], ["U1", "B", 1],
                                                                                 ["U1", "C", 2]]
    titles = dict(zip(raw.items["item"], raw.items["title"]))
    assert titles["A"] == "red lipstick" and pd.isna(titles["B"]) and titles["C"] == "sulfate free shampoo"
    assert raw.source["items"].startswith(str(tmp_path / "toys_item_textual_ids.txt.gz"))
