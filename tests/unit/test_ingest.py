"""Parsing of the original Amazon formats, on a few hand-written records."""
from __future__ import annotations

import gzip
import json

import pandas as pd
import pytest

from components.errors import DataSourceError
from components.ingest import (
    _join_text,
    _parse_price,
    _parse_record,
    pseudonymise,
    read_amazon_reviews,
)


def test_records_are_json_or_python_literals(tmp_path):
    assert _parse_record(tmp_path, 1, '{"asin": "A1"}') == {"asin": "A1"}
    assert _parse_record(tmp_path, 2, "{'asin': 'A1', 'price': 3.5}") == {"asin": "A1", "price": 3.5}
    with pytest.raises(DataSourceError, match="line 3: not a JSON or Python record"):
        _parse_record(tmp_path, 3, "{asin: A1")


@pytest.mark.parametrize("raw, price", [("$1,234.50", 1234.5), ("$5.00 - $9.00", 5.0), (7, 7.0), ("", None),
                                         ("n/a", None)])
def test_prices(raw, price):
    assert _parse_price(raw) == price


def test_category_paths_are_joined():
    assert _join_text([["Beauty", "Hair"], ["Beauty", "Skin"]]) == "Beauty, Hair | Beauty, Skin"
    assert _join_text(["a", None, "b"]) == "a, b"
    assert _join_text(float("nan")) is None


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
