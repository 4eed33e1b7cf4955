"""Find a dataset: in the mirror folder, in its richest layout first, else download the originals."""
from __future__ import annotations

import urllib.error

from components.core.config.schema import Params
from components.core.errors import DataSourceError
from components.data.sources.amazon import download, meta_file, original_file_names, read_original, reviews_file
from components.data.sources.lcrec import interactions_file, read_lcrec_folder
from components.data.sources.p5 import read_p5_folder
from components.data.sources.raw import RawTables


def read_dataset(params: Params, dataset: str | None = None) -> RawTables:
    """Original Amazon files (mirror or earlier download) > LC-Rec > P5 > a fresh download.
    The dataset is data.dataset unless another is named (the review texts of reviews.dataset)."""
    data = params.data
    name = dataset or data.dataset
    mirror = params.path(data.mirror_dir)
    folder = mirror / data.mirror_folders.get(name, name)
    download_dir = params.path(data.download.dir)
    for place in (folder, download_dir):
        reviews = reviews_file(place, name)
        if reviews is not None:
            return read_original(reviews, meta_file(place, name))
    inter = interactions_file(folder, name)
    if inter is not None:
        return read_lcrec_folder(folder, inter)
    p5 = read_p5_folder(folder)
    if p5 is not None:
        return p5
    names = original_file_names(name)
    urls = {k: f"{data.download.base_url.rstrip('/')}/{v}" for k, v in names.items()}
    reason = "downloads are disabled (data.download.enabled: false)"
    if data.download.enabled:
        try:
            reviews = download(urls["reviews"], download_dir / names["reviews"], data.download.timeout_s)
            meta = download(urls["meta"], download_dir / names["meta"], data.download.timeout_s)
            return read_original(reviews, meta)
        except (urllib.error.URLError, OSError) as exc:
            reason = f"the download failed ({exc})"
    raise DataSourceError(
        f"dataset '{name}' not found. Either put its files in the mirror folder {folder} "
        f"(set data.mirror_dir or INTEREST__DATA__MIRROR_DIR), or let ingestion download "
        f"{urls['reviews']} and {urls['meta']} into {download_dir} — {reason}."
    )
