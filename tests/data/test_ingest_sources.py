"""Broken copies of real mirror files make ingest fail with one clear DataSourceError."""
from __future__ import annotations

import gzip
from pathlib import Path

import pytest

from components.config import load_params
from components.errors import DataSourceError
from components.ingest import ingest
from tests.conftest import write_params

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


def ingest_from(tmp_path: Path, mirror: Path, dataset: str):
    params = load_params(write_params(tmp_path, data={  # environ={}: an env mirror must not win
        "dataset": dataset, "mirror_dir": str(mirror), "download": {"enabled": False}}), environ={})
    return ingest(params)


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
