"""Shared fixtures: real data from the mirror, sampled small, in a private copy of params.yaml."""
from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Callable

import pytest
from filelock import FileLock

from components.core.config.loader import derive_params, load_params
from components.core.config.overrides import merge_overrides
from components.core.config.schema import Params
from components.core.io import read_parquet, write_parquet
from components.data.split import split_paths
from components.pipeline import run_step, select_steps

ROOT = Path(__file__).resolve().parents[1]
MIRROR = Path(os.environ.get("INTEREST__DATA__MIRROR_DIR", ROOT.parent / "shared" / "data")).resolve()
SAMPLE_USERS = 400

if workers := int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "0")):
    # each pytest-xdist worker (and the commands it starts) gets its share of the cores for torch, BLAS
    # and OpenMP, set before any of them loads (two workers of two threads each on two cores fight for them)
    for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ.setdefault(name, str(max(1, (os.cpu_count() or 1) // workers)))


def write_params(dest_dir: Path, **overrides: dict) -> Path:
    """A copy of the project's params.yaml in dest_dir, with section overrides merged in."""
    merged: dict = {"data": {"mirror_dir": str(MIRROR)}}
    merge_overrides(merged, overrides)
    return derive_params(ROOT / "params.yaml", dest_dir, merged)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """End-to-end files first: two pytest-xdist workers take whole files, so the longest start at
    once and the many short ones fill in behind them, instead of one long file ending the run."""
    items.sort(key=lambda item: item.get_closest_marker("e2e") is None)


@pytest.fixture(scope="session")
def mirror_dir() -> Path:
    if not MIRROR.is_dir():
        pytest.fail(f"the data mirror is missing at {MIRROR}; set INTEREST__DATA__MIRROR_DIR")
    return MIRROR


@pytest.fixture
def sample_params(tmp_path: Path, mirror_dir: Path) -> Params:
    """Params for a seeded 400-user sample of real Beauty data, all outputs under tmp_path."""
    return load_params(write_params(tmp_path, data={"sample_users": SAMPLE_USERS}))


@pytest.fixture(scope="session")
def shared_sample(tmp_path_factory, mirror_dir: Path) -> Params:
    """Like sample_params, but ingested once per session for read-only tests."""
    params = load_params(write_params(tmp_path_factory.mktemp("sample"), data={"sample_users": SAMPLE_USERS}))
    run_step("ingest", params)
    return params


def built_once(tmp_path_factory, name: str, build: Callable[[Path], Path]) -> Path:
    """build(folder) -> its params file, run once per test run: under pytest-xdist the first worker
    that asks builds in the folder the workers share, and the others wait for it, then read it."""
    base = tmp_path_factory.getbasetemp()
    folder = (base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base) / name
    marker = folder.with_name(f"{name}.built")
    with FileLock(f"{folder}.lock"):
        if not marker.is_file():
            shutil.rmtree(folder, ignore_errors=True)
            marker.write_text(str(build(folder)))
    return Path(marker.read_text())


@pytest.fixture(scope="session")
def prepared_sample(tmp_path_factory, mirror_dir: Path) -> Params:
    """The 400-shopper sample taken through ingest -> validate -> split -> embed, once per run.

    Read-only for the tests that use it: a test that writes outputs makes its own params copy
    pointing at these inputs.
    """
    def build(folder: Path) -> Path:
        params_file = write_params(folder, data={"sample_users": SAMPLE_USERS},
                                   validate={"expectations_dir": str(ROOT / "expectations")})
        params = load_params(params_file)
        for step in select_steps(to="embed"):
            run_step(step.name, params)
        return params_file

    return load_params(built_once(tmp_path_factory, "prepared", build))


def derived_params(prepared: Params, dest: Path, **overrides: dict) -> Path:
    """A params copy that reads the prepared sample's inputs and writes models and reports under
    dest; overrides are merged in key by key (one may point an input elsewhere)."""
    p = prepared
    sections = {
        "data": {"sample_users": p.data.sample_users},
        "split": {"out_dir": str(p.path(p.split.out_dir))},
        "embed": {"out_dir": str(p.path(p.embed.out_dir))},
        "validate": {"out_dir": str(p.path(p.validation.out_dir)),
                     "expectations_dir": str(p.path(p.validation.expectations_dir))},
        "benchmark": {"published_file": str(ROOT / "benchmarks" / "published.json")},
        # 8 epochs (a dozen steps each on 400 shoppers): the first two leave the model at chance level,
        # and a sample's valid figures are too noisy for the project's patience to stop on
        "train": {"epochs": 8, "patience": 8, "max_minutes": 0},
    }
    merge_overrides(sections, overrides)
    return write_params(dest, **sections)


def earlier_split(prepared: Params, dest: Path) -> Path:
    """A copy of the prepared sample's split as the data version before it: each shopper's newest
    training interaction not yet there (a shopper with one keeps it)."""
    shutil.copytree(prepared.path(prepared.split.out_dir), dest)
    train_file = dest / split_paths(prepared)["train"].name
    train = read_parquet(train_file)
    newest = train.groupby("user")["position"].transform("max")
    write_parquet(train[(train["position"] < newest) | (newest == 0)], train_file)
    return dest


@pytest.fixture(scope="session")
def served_sample(tmp_path_factory, prepared_sample: Params) -> Params:
    """The prepared sample taken on through train -> register (8 training epochs), once per run:
    a trained, fine-tuned, evaluated and registered model with its bundle in the store."""
    def build(folder: Path) -> Path:
        params_file = derived_params(prepared_sample, folder, coldstart={"epochs": 20},
                                     privacy={"min_group_size": 3})   # a sample's segments are small
        params = load_params(params_file, environ={})
        for step in select_steps(to="register")[len(select_steps(to="embed")):]:
            run_step(step.name, params)
        return params_file

    return load_params(built_once(tmp_path_factory, "served", build), environ={})
