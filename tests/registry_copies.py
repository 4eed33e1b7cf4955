"""A stored version copied as a new version of the same model (optionally with its bundle
manifest changed): registering the same bundle twice stores it once, so tests that need a second
version make one this way."""
from __future__ import annotations

import shutil
from pathlib import Path
from typing import Callable

import bentoml

from components.core.config.schema import Params
from components.core.io import read_json, write_json
from components.registry.bundle import FILES
from components.registry.store import model_store


def store_copy(params: Params, tag: str, change: Callable[[dict], None] | None = None) -> str:
    source = model_store(params).get(tag)
    metadata = {k: v for k, v in source.info.metadata.items() if k != "bundle_sha256"}
    with bentoml.models.create(params.registry.model_name, labels=dict(source.info.labels), metadata=metadata,
                               _model_store=model_store(params)) as ref:
        shutil.copytree(source.path, ref.path, dirs_exist_ok=True)
        if change is not None:
            manifest_file = Path(ref.path_of(FILES["manifest"]))
            manifest = read_json(manifest_file)
            change(manifest)
            write_json(manifest, manifest_file)
    return str(ref.tag)
