"""The bundle: every file the served recommender needs, in one folder, so that a model version
alone determines every answer. The registry stores it in the model store; the Recommender loads it.

    checkpoint.pt      the interest model after cold-start fine-tuning (config, weights, item ids)
    catalogue.parquet  item, item_idx and the item text fields (title, brand, categories, description)
    counts.npy         interactions per item_idx known when the test cases are scored (train + valid)
    item_knn.npz       the item-kNN neighbour table fitted on the same interactions
    histories.parquet  known shoppers (pseudonymised), their item ids, oldest first, and their
                       segment (-1: none; `interest segments`)
    segments.parquet   segment, item, shoppers: each segment's item popularity (disclosure-
                       controlled), what serving.personalisation blends in for its shoppers
    bundle.json        what is served (the fusion and its weights, tuned on valid), the baselines'
                       and the text encoder's settings, dataset, data version and the figures the
                       evaluation measured for exactly this recommender
"""
from __future__ import annotations

import hashlib
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse as sp
import yaml

from components.core.config.schema import BaselinesParams, Params
from components.core.errors import InterestError
from components.core.io import read_json, read_parquet, write_json, write_npy, write_parquet
from components.data.split import CASE_SPLITS, Split, known_before, load_split
from components.data.validate import validated_paths
from components.evaluation.metrics import HEADLINE_PROTOCOL, HEADLINE_SUBSET, PROTOCOLS
from components.features.embeddings import TextEncoderSettings
from components.models.baselines import BaselineFit, fit_baselines
from components.models.checkpoint import final_cold_model_path
from components.models.fusion import FUSION_NAME
from components.models.interest_scorer import COLD_MODEL_SCORER_NAME

BUNDLE_FORMAT = 3   # 2: the fusion's exposure offset for new products; 3: segments
READABLE_FORMATS = (2, 3)   # a production version registered before segments still serves (without them)
NO_SEGMENT = -1     # a known shopper the segments did not place (not in the training split)
SERVED = FUSION_NAME   # the recommender the bundle serves: the evaluation's fusion of the models below
ITEM_TEXT_FIELDS = ("title", "brand", "categories", "description")
FILES = {"checkpoint": "checkpoint.pt", "catalogue": "catalogue.parquet", "counts": "counts.npy",
         "item_knn": "item_knn.npz", "histories": "histories.parquet", "segments": "segments.parquet",
         "manifest": "bundle.json"}
ADDED_IN = {"segments": 3}   # files a bundle holds from this format on
TEST = CASE_SPLITS[-1]   # the served baselines know what the test cases know


@dataclass(frozen=True)
class Bundle:
    """A bundle folder, read lazily: the manifest at once, each table when asked for."""

    path: Path
    manifest: dict[str, Any]

    @classmethod
    def open(cls, path: Path) -> Bundle:
        path = Path(path)
        manifest_file = path / FILES["manifest"]
        manifest = read_json(manifest_file) if manifest_file.is_file() else {"format": BUNDLE_FORMAT}
        if manifest.get("format") not in READABLE_FORMATS:
            raise InterestError(f"{path}: bundle format {manifest.get('format')} is not one this code reads "
                                f"{READABLE_FORMATS}; register the model again with this version")
        missing = [name for key, name in FILES.items()
                   if ADDED_IN.get(key, 0) <= manifest["format"] and not (path / name).is_file()]
        if missing:
            raise InterestError(f"{path} is not a complete model bundle (missing {', '.join(missing)}): "
                                "register the model again with `interest register`")
        return cls(path, manifest)

    @property
    def checkpoint(self) -> Path:
        return self.path / FILES["checkpoint"]

    def catalogue(self) -> pd.DataFrame:
        return read_parquet(self.path / FILES["catalogue"])

    def baselines(self) -> BaselineFit:
        return BaselineFit(np.load(self.path / FILES["counts"]), sp.load_npz(self.path / FILES["item_knn"]).tocsr())

    def histories(self) -> pd.DataFrame:
        """user, history, segment (NO_SEGMENT in a bundle older than segments)."""
        histories = read_parquet(self.path / FILES["histories"])
        return histories if "segment" in histories else histories.assign(segment=NO_SEGMENT)

    def segment_popularity(self) -> pd.DataFrame:
        """segment, item, shoppers (none in a bundle older than segments)."""
        path = self.path / FILES["segments"]
        return read_parquet(path) if path.is_file() else pd.DataFrame({"segment": pd.Series(dtype="int64"),
                                                                       "item": pd.Series(dtype="string"),
                                                                       "shoppers": pd.Series(dtype="float64")})

    @property
    def fusion_weights(self) -> dict[str, float]:
        return self.manifest["fusion_weights"]

    @property
    def fusion_cold_offset(self) -> float:
        return self.manifest["fusion_cold_offset"]

    @property
    def baselines_params(self) -> BaselinesParams:
        return BaselinesParams(**self.manifest["baselines"])

    @property
    def text_encoder(self) -> TextEncoderSettings:
        return TextEncoderSettings(**self.manifest["text_encoder"])


def data_version(params: Params) -> dict[str, str | None]:
    """DVC's hash of the split output (from dvc.lock), a content hash of the split files, and the
    accepted feedback the data holds (ingest's summary): its folder's hash and its windows."""
    h = hashlib.sha256()
    split_dir = params.path(params.split.out_dir)
    for f in sorted(split_dir.glob("*.parquet")):
        h.update(f.name.encode())
        h.update(f.read_bytes())
    lock = params.root / "dvc.lock"
    dvc_md5 = None
    if lock.is_file():
        stage = (yaml.safe_load(lock.read_text()) or {}).get("stages", {}).get("split", {})
        dvc_md5 = next((o.get("md5") for o in stage.get("outs", []) if o.get("path") == str(params.split.out_dir)), None)
    summary = params.path(params.ingest.out_dir) / "summary.json"
    feedback = read_json(summary).get("feedback", {}) if summary.is_file() else {}
    return {"dvc_md5": dvc_md5, "sha256": h.hexdigest()[:16], "feedback_sha256": feedback.get("sha256"),
            "feedback_windows": ",".join(feedback.get("windows", [])) or None}


def served_figures(ranking: dict) -> dict[str, dict]:
    """The evaluation's figures of the served recommender and of the model inside it, per protocol
    and subset: the bundle describes itself, not another model."""
    return {name: {protocol: {subset: by_model[name] for subset, by_model in ranking[protocol].items()}
                   for protocol in PROTOCOLS}
            for name in (SERVED, COLD_MODEL_SCORER_NAME)}


def catalogue_table(params: Params, split: Split) -> pd.DataFrame:
    """item, item_idx and text fields of every catalogue item, by item_idx."""
    items = read_parquet(validated_paths(params)["items"])
    fields = [f for f in ITEM_TEXT_FIELDS if f in items.columns]
    return (split.item_index[["item", "item_idx"]].merge(items[["item", *fields]], on="item", how="left")
            .sort_values("item_idx").reset_index(drop=True))


def shopper_histories(split: Split, assignment: pd.DataFrame) -> pd.DataFrame:
    """user -> item ids, oldest first, as known when the test cases are scored, and segment."""
    ids = np.empty(int(split.item_index["item_idx"].max()) + 1, dtype=object)
    ids[split.item_index["item_idx"].to_numpy()] = split.item_index["item"].to_numpy()
    test = split.cases[split.cases["split"] == TEST]
    segment = test["user"].map(assignment.set_index("user")["segment"]).fillna(NO_SEGMENT).astype(np.int64)
    return pd.DataFrame({"user": test["user"].to_numpy(),
                         "history": [ids[np.asarray(h, dtype=np.int64)].tolist() for h in test["history"]],
                         "segment": segment.to_numpy()})


def write_bundle(params: Params, dest: Path) -> dict[str, Any]:
    """Fill dest with the bundle of the pipeline's current outputs; returns the manifest."""
    checkpoint = final_cold_model_path(params)
    ranking_file = params.path(params.evaluate.metrics_file)
    segments = params.segments
    assignment_file, popularity_file = params.path(segments.assignment_file), params.path(segments.popularity_file)
    for path, step in ((checkpoint, "finetune_cold"), (ranking_file, "evaluate"), (assignment_file, "segments")):
        if not path.is_file():
            raise InterestError(f"no {path}: run the pipeline up to `{step}` first (`interest run --to {step}`)")
    ranking = read_json(ranking_file)
    split = load_split(params)
    fit = fit_baselines(params.baselines, known_before(split, TEST))
    dest.mkdir(parents=True, exist_ok=True)
    shutil.copy(checkpoint, dest / FILES["checkpoint"])
    write_parquet(catalogue_table(params, split), dest / FILES["catalogue"])
    write_npy(fit.counts, dest / FILES["counts"])
    sp.save_npz(dest / FILES["item_knn"], fit.similarity)
    write_parquet(shopper_histories(split, read_parquet(assignment_file)), dest / FILES["histories"])
    write_parquet(read_parquet(popularity_file)[["segment", "item", "shoppers"]], dest / FILES["segments"])
    manifest = {
        "format": BUNDLE_FORMAT,
        "served": SERVED,
        "fusion_weights": ranking["fusion_weights"],
        "fusion_cold_offset": ranking["fusion_cold_offset"],
        "baselines": params.baselines.settings(),
        "text_encoder": {k: v for k, v in params.embed.settings().items() if k != "device"},
        "dataset": params.data.dataset,
        "data_version": data_version(params),
        "figures": served_figures(ranking),
        "cases": ranking["cases"],
    }
    write_json(manifest, dest / FILES["manifest"])
    return manifest


def headline(manifest: dict[str, Any], name: str = SERVED) -> dict[str, float]:
    """The bundle's figures for `name` on the headline protocol and subset."""
    return manifest["figures"][name][HEADLINE_PROTOCOL][HEADLINE_SUBSET]
