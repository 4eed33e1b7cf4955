"""Every source layout on the real mirror files, and broken copies of them: each layout reads every
file it defines (a category in the plain P5 layout keeps its item text, so validation passes);
a damaged file fails ingest with one clear DataSourceError."""
from __future__ import annotations

import gzip
from pathlib import Path

import pytest

from components.core.config.loader import load_params
from components.core.errors import DataSourceError
from components.core.io import read_parquet
from components.data.ingest import ingest
from components.data.validate import validate
from tests.conftest import ROOT, write_params

pytestmark = pytest.mark.data


def broken_mirror(tmp_path: Path, mirror_dir: Path, folder: str, name: str, data: bytes) -> Path:
    """A mirror folder linking the real files, with `name` replaced by `data`."""
    target = tmp_path / "mirror" / folder
    target.mkdir(parents=True)
    for src in (mirror_dir / folder).iterdir():
        (target / src.name).symlink_to(src)
    (target / name).unlink()
    (target / name).write_bytes(data)
    return tmp_path / "mirror"


def params_on(tmp_path: Path, mirror: Path, dataset: str, **data):
    return load_params(write_params(tmp_path, data={  # environ={}: an env mirror must not win
        "dataset": dataset, "mirror_dir": str(mirror), "download": {"enabled": False}, **data},
        validate={"expectations_dir": str(ROOT / "expectations")}), environ={})


def ingest_from(tmp_path: Path, mirror: Path, dataset: str):
    return ingest(params_on(tmp_path, mirror, dataset))


def mirror_with(tmp_path: Path, mirror_dir: Path, folder: str, files: list[str], as_folder: str) -> Path:
    """A mirror whose folder `as_folder` links only `files` of the real folder."""
    target = tmp_path / "mirror" / as_folder
    target.mkdir(parents=True)
    for name in files:
        (target / name).symlink_to(mirror_dir / folder / name)
    return tmp_path / "mirror"


def test_p5_layout_keeps_its_item_text_and_validates(tmp_path, mirror_dir):
    """As a new user would try it: a category mirrored in the plain P5 layout (sequences and
    textual ids, as P5 / IDGenRec publish them), under a name the project has never seen."""
    mirror = mirror_with(tmp_path, mirror_dir, "amazon-beauty",
                         ["beauty_user_sequence.txt.gz", "beauty_item_textual_ids.txt.gz"], "Makeup")
    params = params_on(tmp_path, mirror, "Makeup", sample_users=300)
    summary = ingest(params)
    assert summary.format == "p5-sequences" and "items" in summary.files
    items = read_parquet(params.path(params.ingest.out_dir) / "items.parquet")
    assert items["title"].notna().mean() > 0.99
    report = validate(params)   # title coverage is a stopping check: it passes
    assert report.success and report.tables["items"].rows_validated == len(items)


def test_lcrec_layout_reads_maps_text_and_cross_checks(tmp_path, mirror_dir):
    summary = ingest_from(tmp_path, mirror_dir, "Beauty")
    assert summary.format == "lcrec"
    assert {"interactions", "sequences_cross_check", "items"} <= set(summary.files)
    assert summary.users == 22_363 and summary.items == 12_101 and summary.rows["interactions"] == 198_502


def test_lcrec_layout_with_full_item_text(tmp_path, mirror_dir):
    summary = ingest_from(tmp_path, mirror_dir, "Scientific")
    assert summary.format == "lcrec" and summary.files["items"].endswith("Scientific.item.json.gz")
    assert summary.users == 8_317 and summary.items == 4_344 and summary.rows["interactions"] == 58_492


def test_original_amazon_layout_reads_reviews_with_ratings_and_times(tmp_path, mirror_dir):
    summary = ingest_from(tmp_path, mirror_dir, "All_Beauty")
    assert summary.format == "amazon-reviews"
    assert "rating" not in summary.missing_fields["interactions"]
    assert "timestamp" not in summary.missing_fields["interactions"]


@pytest.mark.parametrize("dataset, folder, name", [
    ("All_Beauty", "amazon-all-beauty-2018", "All_Beauty_5.json.gz"),
    ("Beauty", "amazon-beauty", "Beauty.inter.json.gz"),
])
def test_truncated_gzip_is_named(tmp_path, mirror_dir, dataset, folder, name):
    data = (mirror_dir / folder / name).read_bytes()
    mirror = broken_mirror(tmp_path, mirror_dir, folder, name, data[: len(data) // 2])
    with pytest.raises(DataSourceError, match=rf"{name} is truncated or not a valid gzip file"):
        ingest_from(tmp_path, mirror, dataset)


@pytest.mark.parametrize("encoding", ["utf-16", "utf-32"])
def test_wrong_encoding_is_named(tmp_path, mirror_dir, encoding):
    """The mirror's text is pure ASCII, so a latin-1 copy is byte-identical (and fine); UTF-16/32 are not."""
    folder, name = "amazon-all-beauty-2018", "All_Beauty_5.json.gz"
    text = gzip.decompress((mirror_dir / folder / name).read_bytes()).decode("utf-8")
    mirror = broken_mirror(tmp_path, mirror_dir, folder, name, gzip.compress(text.encode(encoding), compresslevel=1))
    with pytest.raises(DataSourceError, match=rf"{name} is not UTF-8 text .*convert it to UTF-8"):
        ingest_from(tmp_path, mirror, "All_Beauty")
