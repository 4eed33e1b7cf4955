"""The GX suites on real data: they pass on the Beauty sample, and each deliberately broken copy
fails with the right expectation named, its rows quarantined or the pipeline stopped as
params.yaml says. Ratings and timestamps come from the original-format All_Beauty file."""
from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from components.cli import main
from components.core.config.loader import load_params
from components.core.config.schema import Params
from components.core.errors import ConfigError, DataValidationError
from components.core.io import read_parquet, write_parquet
from components.data.ingest import ingest
from components.data.validate import (
    ValidationReport,
    quarantine_path,
    validate,
    validated_paths,
)
from tests.conftest import ROOT, write_params

pytestmark = pytest.mark.data

TABLES = ("interactions", "items", "reviews")
DAY_S = 86_400
ALL_BEAUTY = {"title_coverage_min": 0.0}  # the 5-core file comes without product metadata: no titles


def ingested(params: Params) -> dict[str, pd.DataFrame]:
    out = params.path(params.ingest.out_dir)
    return {t: read_parquet(out / f"{t}.parquet") for t in TABLES}


def params_for(tmp_path: Path, tables: dict[str, pd.DataFrame], **overrides: dict) -> Params:
    """Params in tmp_path whose ingested tables are the given (possibly broken) copies."""
    in_dir = tmp_path / "ingested"
    for name, df in tables.items():
        write_parquet(df, in_dir / f"{name}.parquet")
    validate_overrides = {"expectations_dir": str(ROOT / "expectations"), **overrides.pop("validate", {})}
    return load_params(write_params(tmp_path, ingest={"out_dir": str(in_dir)}, validate=validate_overrides,
                                    **overrides))


def assert_accounted(params: Params, tables: dict[str, pd.DataFrame], report: ValidationReport) -> pd.DataFrame:
    """validated + quarantined == input for every table; returns the quarantine."""
    quarantine = read_parquet(quarantine_path(params))
    for table, df in tables.items():
        validated = read_parquet(validated_paths(params)[table])
        q = quarantine[quarantine["table"] == table]
        assert len(validated) + len(q) == len(df) == report.tables[table].rows_in
        assert len(q) == report.tables[table].rows_quarantined
        assert q["row"].is_unique
        assert all(len(names) > 0 for names in q["failed_expectations"])
        kept = df.drop(index=q["row"].tolist()).reset_index(drop=True)
        pd.testing.assert_frame_equal(validated, kept)
    return quarantine


def quarantined_rows(quarantine: pd.DataFrame, table: str, name: str) -> list[int]:
    mine = quarantine[(quarantine["table"] == table) & quarantine["failed_expectations"].map(lambda n: name in n)]
    return sorted(mine["row"].tolist())


@pytest.fixture(scope="module")
def all_beauty(tmp_path_factory, mirror_dir: Path) -> dict[str, pd.DataFrame]:
    """The original-format All_Beauty reviews (real ratings and timestamps), ingested once."""
    params = load_params(write_params(tmp_path_factory.mktemp("all_beauty"), data={"dataset": "All_Beauty"}))
    ingest(params)
    return ingested(params)



# --------------------------------------------------------------------------- the real data passes
def test_suites_pass_on_real_beauty_sample(shared_sample: Params, tmp_path: Path):
    tables = ingested(shared_sample)
    params = params_for(tmp_path, tables)
    report = validate(params)

    assert report.success and not report.stopped
    assert all(not t.failed and t.rows_quarantined == 0 for t in report.tables.values())
    assert_accounted(params, tables, report)
    result = json.loads(Path(report.tables["interactions"].result_file).read_text())
    names = {r["expectation_config"]["meta"]["name"] for r in result["results"]}
    assert {"user_item_unique", "rating_in_range", "timestamp_not_in_future", "item_in_catalogue"} <= names
    assert Path(report.data_docs).is_file() and Path(report.data_docs).parent.parent == params.path(
        params.validation.reports_dir)
    assert json.loads(Path(report.summary_file).read_text())["stopped"] is False


def test_real_all_beauty_duplicates_are_quarantined(all_beauty, tmp_path: Path):
    """The 2018 file repeats reviews, so (user, item) pairs repeat: every copy is quarantined."""
    params = params_for(tmp_path, all_beauty, validate=ALL_BEAUTY)
    report = validate(params)

    inter = all_beauty["interactions"]
    dup_rows = sorted(inter.index[inter.duplicated(["user", "item"], keep=False)])
    assert report.tables["interactions"].failed_names == {"user_item_unique"}
    assert report.tables["items"].success and report.tables["reviews"].success
    quarantine = assert_accounted(params, all_beauty, report)
    assert quarantined_rows(quarantine, "interactions", "user_item_unique") == dup_rows
    validated = read_parquet(validated_paths(params)["interactions"])
    assert validated["rating"].notna().all() and validated["timestamp"].notna().all()


# --------------------------------------------------------------------------- broken copies: quarantine
# One GX run per source covers every row-level defect: each defect is on its own rows, so each
# expectation must name exactly those rows (and the quarantine must account for all of them).
NULL_USER, NULL_ITEM, UNKNOWN_ITEM, DUPLICATED = [3, 10, 17], [4, 11, 18], [5, 12, 19], [6, 13, 20]
RATING_7, FUTURE = [3, 10, 17], [4, 11, 18]


def _set(df: pd.DataFrame, rows: list[int], col: str, value) -> pd.DataFrame:
    return df.assign(**{col: df[col].where(~df.index.isin(rows), value)})


def _duplicate(df: pd.DataFrame, rows: list[int] = DUPLICATED) -> pd.DataFrame:
    return pd.concat([df, df.loc[rows]], ignore_index=True)


@pytest.fixture(scope="module")
def broken_beauty(shared_sample, tmp_path_factory):
    """Beauty sample with null ids, an unknown item, duplicated pairs and null catalogue ids."""
    tables = ingested(shared_sample)
    inter, items = tables["interactions"], tables["items"]
    n = len(inter)
    lost = set(items.loc[NULL_ITEM, "item"])
    inter = _set(_set(inter, NULL_USER, "user", pd.NA), NULL_ITEM, "item", pd.NA)
    inter = _duplicate(_set(inter, UNKNOWN_ITEM, "item", "B0NOTINCAT"))
    tables.update(interactions=inter, items=_set(items, NULL_ITEM, "item", pd.NA))
    params = params_for(tmp_path_factory.mktemp("broken_beauty"), tables)
    expected = {
        ("interactions", "user_not_null"): NULL_USER,
        ("interactions", "item_not_null"): NULL_ITEM,
        ("interactions", "user_item_unique"): DUPLICATED + list(range(n, n + len(DUPLICATED))),
        # an unknown id, or an item the items suite quarantined: checked against the cleaned catalogue
        ("interactions", "item_in_catalogue"): sorted(set(UNKNOWN_ITEM) | set(inter.index[inter["item"].isin(lost)])),
        ("items", "item_not_null"): NULL_ITEM,
    }
    return params, tables, validate(params), expected


@pytest.fixture(scope="module")
def broken_all_beauty(all_beauty, tmp_path_factory):
    """Real All_Beauty ratings and timestamps with a rating of 7 and timestamps a day ahead."""
    future = int(time.time()) + DAY_S
    tables = {t: _set(_set(df, RATING_7, "rating", 7.0), FUTURE, "timestamp", future) if t != "items" else df
              for t, df in all_beauty.items()}
    params = params_for(tmp_path_factory.mktemp("broken_all_beauty"), tables, validate=ALL_BEAUTY)
    expected = {(t, name): rows for t in ("interactions", "reviews")
                for name, rows in (("rating_in_range", RATING_7), ("timestamp_not_in_future", FUTURE))}
    return params, tables, validate(params), expected


@pytest.mark.parametrize("table, name", [
    ("interactions", "user_not_null"), ("interactions", "item_not_null"), ("interactions", "user_item_unique"),
    ("interactions", "item_in_catalogue"), ("items", "item_not_null"),
])
def test_broken_beauty_rows_are_quarantined(broken_beauty, table, name):
    params, _, report, expected = broken_beauty
    assert not report.success and not report.stopped
    assert name in report.tables[table].failed_names
    failed = next(f for f in report.tables[table].failed if f.name == name)
    assert failed.action == "quarantine" and failed.unexpected_count == len(expected[table, name])
    assert quarantined_rows(read_parquet(quarantine_path(params)), table, name) == expected[table, name]


@pytest.mark.parametrize("table", ["interactions", "reviews"])
@pytest.mark.parametrize("name", ["rating_in_range", "timestamp_not_in_future"])
def test_broken_all_beauty_values_are_quarantined(broken_all_beauty, table, name):
    params, _, report, expected = broken_all_beauty
    assert name in report.tables[table].failed_names
    quarantine = read_parquet(quarantine_path(params))
    assert quarantined_rows(quarantine, table, name) == expected[table, name]
    col = "rating" if name == "rating_in_range" else "timestamp"
    values = quarantine[quarantine["table"] == table].set_index("row").loc[expected[table, name], "values"]
    assert all(json.loads(v)[col] == (7.0 if col == "rating" else pytest.approx(time.time(), abs=2 * DAY_S))
               for v in values)


@pytest.mark.parametrize("broken", ["broken_beauty", "broken_all_beauty"])
def test_every_row_is_validated_or_quarantined(request, broken):
    params, tables, report, expected = request.getfixturevalue(broken)
    quarantine = assert_accounted(params, tables, report)
    named = {(t, n) for t, names in zip(quarantine["table"], quarantine["failed_expectations"]) for n in names}
    assert set(expected) <= named


# --------------------------------------------------------------------------- broken copies: stop
def _low_titles(df):
    return df.assign(title=df["title"].mask(pd.Series(range(len(df))) % 2 == 0))


def _drop_rating(df):
    return df.drop(columns=["rating"])


@pytest.mark.parametrize("table, break_it, name", [
    ("items", _duplicate, "item_unique"),            # row-level, configured as stop
    ("items", _low_titles, "title_coverage"),        # table-level: always stops
    ("interactions", _drop_rating, "columns_match_schema"),
])
def test_broken_beauty_tables_stop(shared_sample, tmp_path, table, break_it, name):
    tables = ingested(shared_sample)
    tables[table] = break_it(tables[table])
    params = params_for(tmp_path, tables)
    stale = write_parquet(tables["interactions"], validated_paths(params)["interactions"])  # an earlier run's

    with pytest.raises(DataValidationError, match=rf"{table}\.{name} ") as err:
        validate(params)
    assert "stopped the pipeline" in str(err.value)
    summary = json.loads(params.path(params.validation.reports_dir / "summary.json").read_text())
    assert summary["stopped"] is True and summary["outputs"] == {}
    assert name in {f["name"] for f in summary["tables"][table]["failed"]}
    assert not stale.exists() and not quarantine_path(params).exists()


def test_row_level_expectation_can_be_set_to_stop(all_beauty, tmp_path):
    tables = dict(all_beauty)
    tables["interactions"] = _set(tables["interactions"], RATING_7, "rating", 7.0)
    params = params_for(tmp_path, tables, validate={**ALL_BEAUTY, "on_failure": {"rating_in_range": "stop"}})

    with pytest.raises(DataValidationError, match=r"interactions\.rating_in_range .*3 unexpected rows -> stop"):
        validate(params)


def test_row_count_out_of_bounds_stops_the_cli(shared_sample, tmp_path, monkeypatch, capsys):
    tables = ingested(shared_sample)
    n = len(tables["interactions"])
    params = params_for(tmp_path, tables, validate={"row_count": {"interactions": {"min": n + 1}}})
    monkeypatch.setattr(sys, "argv", ["interest", "validate", "--params", str(params.root / "params.yaml")])

    with pytest.raises(SystemExit) as exit_:
        main()
    assert exit_.value.code != 0
    assert f"interactions.row_count_in_bounds (expect_table_row_count_to_be_between): observed {n}" \
        in capsys.readouterr().err


# --------------------------------------------------------------------------- policy configuration
@pytest.mark.parametrize("on_failure, message", [
    ({"row_count_in_bounds": "quarantine"}, r"on_failure\.row_count_in_bounds: checks a whole table"),
    ({"rating_in_rnage": "stop"}, r"on_failure\.rating_in_rnage: no expectation of that name"),
])
def test_policy_mistakes_are_named(shared_sample, tmp_path, on_failure, message):
    params = params_for(tmp_path, ingested(shared_sample), validate={"on_failure": on_failure})
    with pytest.raises(ConfigError, match=message):
        validate(params)


def test_missing_policy_is_named(shared_sample, tmp_path):
    params = params_for(tmp_path, ingested(shared_sample))
    policies = {k: v for k, v in params.validation.on_failure.items() if k != "item_in_catalogue"}
    params = params.model_copy(update={"validation": params.validation.model_copy(update={"on_failure": policies})})
    with pytest.raises(ConfigError, match=r"on_failure\.item_in_catalogue: missing"):
        validate(params)
