"""Privacy on the real sample: no raw shop id in any store or artefact of a trained, registered
sample with served feedback; `forget-user` leaves no row of the shopper in the feedback store or
any table, the register holds only the pseudonym, and the next data version and training split
leave the shopper out; the service's erasure does the same for its store and then serves the
shopper as anonymous."""
from __future__ import annotations

import threading
from pathlib import Path

import pytest
from typer.testing import CliRunner

from components.cli import app
from components.core.config.loader import load_params
from components.core.config.schema import Params
from components.core.io import read_json, read_parquet
from components.data.erasure import REGISTER, ErasedShoppers, erased_shoppers, record_erasure
from components.data.ingest import shop_ids
from components.data.split import load_split
from components.feedback.events import Event
from components.feedback.store import open_store
from components.pipeline import run_step
from components.serving.app import FeedbackInput, ServingApp
from tests.conftest import ROOT, SAMPLE_USERS, write_params

SHOPPERS = 20


def files_under(*roots: Path) -> list[Path]:
    return [p for root in roots for p in root.rglob("*") if p.is_file()]


def holding(files: list[Path], needles: set[str]) -> dict[str, list[str]]:
    """Which files hold which of the strings, byte for byte."""
    found = {}
    for path in files:
        data = path.read_bytes()
        hits = [n for n in needles if n.encode() in data]
        if hits:
            found[str(path)] = hits
    return found


@pytest.fixture(scope="module")
def served_app(served_sample: Params, tmp_path_factory) -> tuple[Params, ServingApp, dict[str, str]]:
    """The service's app on the registered sample, its own feedback store and erasure register,
    after feedback (a review text included) from SHOPPERS known shoppers sent by raw shop id."""
    root = tmp_path_factory.mktemp("privacy-service")
    params = load_params(served_sample.root / "params.yaml", environ={
        "INTEREST__SERVING__STORE_URL": f"sqlite:///{root / 'feedback.db'}",
        "INTEREST__PRIVACY__ERASURE_DIR": str(root / "erasures")})
    raw = shop_ids(params, set(load_split(params).cases["user"].head(SHOPPERS)))
    serving = ServingApp(params)
    for n, shop_id in enumerate(raw):
        answer = serving.recommend(user=shop_id, k=5)
        item = answer["items"][0]["item"]
        serving.feedback([FeedbackInput(event_id=f"e{n}", kind="click", user=shop_id, item=item,
                                        request_id=answer["request_id"]),
                          FeedbackInput(event_id=f"r{n}", kind="review", user=shop_id, item=item, rating=2,
                                        text=f"the review of shopper {n}")])
    serving.store.flush()
    yield params, serving, raw
    serving.close()


def test_no_raw_shop_id_in_any_store_or_artefact(served_app, prepared_sample):
    """Every file of the prepared sample (data versions, embeddings), of the trained and
    registered one (models, metrics, reports, the model store) and the feedback store."""
    params, _, raw = served_app
    files = files_under(prepared_sample.root, params.root, params.path(params.registry.home))
    assert len(files) > 50
    store_file = Path(params.serving.store_url.removeprefix("sqlite:///"))
    store_files = [store_file, *store_file.parent.glob("feedback.db-*")]   # with SQLite's write-ahead log
    assert holding(files + store_files, set(raw)) == {}
    assert holding(store_files, set(raw.values()))   # the pseudonyms are there: the check can find ids


def test_the_service_forgets_a_shopper_and_serves_them_anonymously(served_app):
    params, serving, raw = served_app
    shop_id, who = next(iter(raw.items()))
    entry = serving.forget_user(shop_id)
    assert entry["shopper"] == who and entry["removed"]["feedback_store"] == {"events": 2, "slates": 1}
    store = open_store(params)
    try:
        events = store.events_between(0, float("inf"))
        slates = store.slates_between(0, float("inf"))
    finally:
        store.close()
    assert who not in set(events["user"]) and who not in set(slates["user"].dropna())
    assert erased_shoppers(params.path(params.privacy.erasure_dir)) == {who}
    register = (params.path(params.privacy.erasure_dir) / REGISTER).read_text(encoding="utf-8")
    assert shop_id not in register
    answer = serving.recommend(user=shop_id, k=5)
    serving.store.flush()
    store = open_store(params)
    try:
        logged = store.slates_between(0, float("inf"))
    finally:
        store.close()
    assert logged.loc[logged["request_id"] == answer["request_id"], "user"].isna().all()


def test_forget_user_leaves_nothing_behind_and_the_next_data_version_leaves_them_out(mirror_dir, tmp_path):
    """On a sample of its own: every output under tmp_path (params.yaml's folder)."""
    params = load_params(write_params(tmp_path, data={"sample_users": SAMPLE_USERS},
                                      ingest={"out_dir": "ingested", "feedback_dir": "accepted"},
                                      validate={"out_dir": "validated", "expectations_dir": str(ROOT / "expectations")},
                                      split={"out_dir": "split"}, serving={"store_url": "sqlite:///feedback.db"},
                                      privacy={"erasure_dir": "erasures"}), environ={})
    for step in ("ingest", "validate", "split"):
        run_step(step, params)
    who = load_split(params).cases["user"].iloc[0]
    shop_id = next(iter(shop_ids(params, {who})))
    store = open_store(params)
    try:
        store.record([Event(event_id="e1", kind="click", user=who, item="x", text=None),
                      Event(event_id="e2", kind="click", user="someone-else", item="x")])
    finally:
        store.close()
    before = {p: len(read_parquet(p)) for p in (tmp_path / "split").glob("*.parquet")}

    result = CliRunner().invoke(app, ["forget-user", shop_id, "--params", str(params.root / "params.yaml")])
    assert result.exit_code == 0, result.output
    entry = read_json(tmp_path / "erasures" / REGISTER)[0]
    assert entry["shopper"] == who and entry["removed"]["feedback_store"] == {"events": 1, "slates": 0}
    assert {Path(f).parent.name for f in entry["removed"]["files"]} >= {"ingested", "validated", "split"}
    tables = [p for p in files_under(tmp_path) if p.suffix == ".parquet"]
    assert holding(tables, {who}) == {}
    assert sum(len(read_parquet(p)) for p in before) < sum(before.values())
    store = open_store(params)
    try:
        assert set(store.events_between(0, float("inf"))["user"]) == {"someone-else"}
    finally:
        store.close()

    for step in ("ingest", "validate", "split"):   # the next data version
        run_step(step, params)
    assert read_json(tmp_path / "ingested" / "summary.json")["erased_shoppers"] == 1
    assert who not in set(load_split(params).train["user"]) and who not in set(load_split(params).cases["user"])
    everything = files_under(tmp_path)
    assert set(holding(everything, {who})) == {str(tmp_path / "erasures" / REGISTER)}
    assert holding(everything, {shop_id}) == {}


def test_erasures_at_several_workers_at_once_are_all_registered_and_seen_by_every_worker(tmp_path):
    folder = tmp_path / "erasures"
    other_worker = ErasedShoppers(folder)
    assert "s7" not in other_worker
    threads = [threading.Thread(target=record_erasure, args=(folder, f"s{i}", {})) for i in range(40)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert erased_shoppers(folder) == {f"s{i}" for i in range(40)}     # no read-modify-write lost one
    assert "s7" in other_worker and "s99" not in other_worker          # read again once it changed
    assert [p.name for p in folder.iterdir()] == ["register.json"]     # no lock file in the DVC dependency
