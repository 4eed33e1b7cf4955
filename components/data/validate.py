"""Great Expectations gate between ingest and split: every row is kept, quarantined, or stops the run.

One suite per table lives as JSON in validate.expectations_dir, each expectation named in its
meta. The suites run through a GX checkpoint on an ephemeral context whose only files are the Data
Docs under validate.reports_dir, so GX leaves nothing in the repository. A failed row-level
expectation moves its rows to quarantine.parquet or stops the pipeline, as validate.on_failure
says per name; table-level ones (schema, row count, title coverage) always stop. Items go first,
so interactions and reviews are checked against the catalogue that passed.
"""
from __future__ import annotations

import json
import logging
import shutil
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from components.core.config.schema import Params, ValidateParams
from components.core.errors import ConfigError, DataSourceError, DataValidationError
from components.core.io import read_parquet, write_json, write_parquet

if TYPE_CHECKING:
    from great_expectations.core.expectation_validation_result import (
        ExpectationSuiteValidationResult,
    )
    from great_expectations.data_context import EphemeralDataContext
    from great_expectations.datasource.fluent import PandasDatasource
    from great_expectations.expectations.expectation import Expectation

log = logging.getLogger(__name__)

ORDER = ("items", "interactions", "reviews")  # the catalogue first: the others are checked against it
QUARANTINE, STOP = "quarantine", "stop"
DOCS_SITE = "reports"


@dataclass(frozen=True)
class FailedExpectation:
    table: str
    name: str
    expectation: str          # GX expectation type
    column: str | None
    action: str               # quarantine | stop
    unexpected_count: int | None
    observed: str | None      # observed value of a table-level check, or the error it raised

    def describe(self) -> str:
        where = f", column {self.column}" if self.column else ""
        found = (f"{self.unexpected_count} unexpected rows" if self.unexpected_count is not None
                 else f"observed {self.observed}")
        return f"{self.table}.{self.name} ({self.expectation}{where}): {found} -> {self.action}"


@dataclass(frozen=True)
class TableReport:
    table: str
    success: bool
    rows_in: int
    rows_validated: int
    rows_quarantined: int
    failed: tuple[FailedExpectation, ...]
    result_file: str          # the GX validation result, JSON

    @property
    def failed_names(self) -> set[str]:
        return {f.name for f in self.failed}


@dataclass(frozen=True)
class ValidationReport:
    tables: dict[str, TableReport]
    stopped: bool             # an expectation configured as `stop` failed; no tables were written
    outputs: dict[str, str]   # validated tables and quarantine.parquet (empty when stopped)
    data_docs: str
    summary_file: str

    @property
    def success(self) -> bool:
        return all(t.success for t in self.tables.values())

    def summary(self) -> str:
        """Readable multi-line account: what failed, what it did, where the reports are."""
        failed = [f for t in self.tables.values() for f in t.failed]
        stops = [f for f in failed if f.action == STOP]
        if self.stopped:
            head = f"validation stopped the pipeline: {len(stops)} expectation(s) configured to stop failed"
        elif failed:
            head = f"validation quarantined rows: {len(failed)} expectation(s) failed"
        else:
            head = "validation passed: every expectation met"
        quarantines = [f for f in failed if f.action != STOP]
        lines = [head, *(f"  - {f.describe()}" for f in stops + quarantines)]
        lines.append("rows: " + "; ".join(
            f"{t.table} {t.rows_in} in, {t.rows_validated} validated, {t.rows_quarantined} quarantined"
            for t in self.tables.values()))
        lines.append(f"reports: {self.data_docs} and {self.summary_file}")
        return "\n".join(lines)


def validated_paths(params: Params) -> dict[str, Path]:
    out = params.path(params.validation.out_dir)
    return {name: out / f"{name}.parquet" for name in ORDER}


def quarantine_path(params: Params) -> Path:
    return params.path(params.validation.out_dir) / "quarantine.parquet"


# --------------------------------------------------------------------------- suites and policies
def load_suite(path: Path) -> tuple[str, list[Expectation]]:
    """Suite name and expectations from a GX suite JSON file; every expectation needs a meta name."""
    from great_expectations.expectations.expectation_configuration import (
        ExpectationConfiguration,
    )

    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise ConfigError(f"no expectation suite at {path} (validate.expectations_dir)") from exc
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{path} is not valid JSON: {exc}") from exc
    expectations, names = [], set()
    for n, spec in enumerate(raw.get("expectations", []), 1):
        name = (spec.get("meta") or {}).get("name")
        if not name or name in names:
            raise ConfigError(f"{path}, expectation {n}: meta.name is missing or repeated ({name!r})")
        names.add(name)
        try:
            expectations.append(ExpectationConfiguration(**spec).to_domain_obj())
        except Exception as exc:  # GX raises several unrelated types for a bad configuration
            raise ConfigError(f"{path}, expectation {name}: not a valid GX expectation ({exc})") from exc
    return raw.get("name", path.stem), expectations


def is_row_level(expectation: Expectation) -> bool:
    """Only a per-row check that every row must pass can point at rows to quarantine."""
    import great_expectations as gx
    from great_expectations.expectations.expectation import (
        ColumnMapExpectation,
        ColumnPairMapExpectation,
        MulticolumnMapExpectation,
    )

    row_checks = (ColumnMapExpectation, ColumnPairMapExpectation, MulticolumnMapExpectation)
    type_checks = (gx.expectations.ExpectColumnValuesToBeOfType, gx.expectations.ExpectColumnValuesToBeInTypeList)
    return (isinstance(expectation, row_checks) and not isinstance(expectation, type_checks)
            and getattr(expectation, "mostly", 1) == 1)


def check_policies(suites: dict[str, list[Expectation]], on_failure: dict[str, str]) -> None:
    """Every row-level expectation has a policy, every policy names one, and only rows quarantine."""
    row_level = {e.meta["name"] for exps in suites.values() for e in exps if is_row_level(e)}
    all_names = {e.meta["name"] for exps in suites.values() for e in exps}
    problems = [f"validate.on_failure.{n}: no expectation of that name in the suites"
                for n in sorted(set(on_failure) - all_names)]
    problems += [f"validate.on_failure.{n}: missing; set it to quarantine or stop"
                 for n in sorted(row_level - set(on_failure))]
    problems += [f"validate.on_failure.{n}: checks a whole table, so it can only stop"
                 for n in sorted(all_names - row_level) if on_failure.get(n) == QUARANTINE]
    if problems:
        raise ConfigError("; ".join(problems))


# --------------------------------------------------------------------------- GX run
def gx_context(docs_dir: Path) -> EphemeralDataContext:
    """In-memory stores; only the Data Docs site is on disk. Analytics and progress bars off."""
    import great_expectations as gx
    from great_expectations.data_context.types.base import (
        DataContextConfig,
        InMemoryStoreBackendDefaults,
        ProgressBarsConfig,
    )

    config = DataContextConfig(
        store_backend_defaults=InMemoryStoreBackendDefaults(),
        analytics_enabled=False,
        progress_bars=ProgressBarsConfig(globally=False),
        data_docs_sites={DOCS_SITE: {
            "class_name": "SiteBuilder",
            "store_backend": {"class_name": "TupleFilesystemStoreBackend", "base_directory": str(docs_dir)},
            "site_index_builder": {"class_name": "DefaultSiteIndexBuilder"},
        }},
    )
    return gx.get_context(mode="ephemeral", project_config=config)


def run_checkpoint(context: EphemeralDataContext, source: PandasDatasource, table: str, suite_name: str,
                   expectations: list[Expectation], df: pd.DataFrame,
                   suite_parameters: dict[str, Any]) -> ExpectationSuiteValidationResult:
    """Validate one table through its checkpoint; COMPLETE results carry the failing row indices.

    Data Docs are built once after all tables (see validate): a docs action per checkpoint would
    recompile GX's templates three times.
    """
    import great_expectations as gx

    batch = source.add_dataframe_asset(name=table).add_batch_definition_whole_dataframe(name=table)
    suite = context.suites.add(gx.ExpectationSuite(name=suite_name, expectations=expectations))
    definition = context.validation_definitions.add(gx.ValidationDefinition(name=table, data=batch, suite=suite))
    checkpoint = context.checkpoints.add(gx.Checkpoint(
        name=f"validate_{table}",
        validation_definitions=[definition],
        result_format={"result_format": "COMPLETE"},
    ))
    result = checkpoint.run(batch_parameters={"dataframe": df}, expectation_parameters=suite_parameters)
    return next(iter(result.run_results.values()))


# --------------------------------------------------------------------------- results -> rows
def _error_message(info: Any) -> str | None:
    """The error an expectation raised, if any; GX reports it per expectation or per failed metric."""
    if not isinstance(info, dict):
        return None
    if "exception_message" in info:
        return info["exception_message"] if info.get("raised_exception", True) else None
    return "; ".join(m for m in map(_error_message, info.values()) if m) or None


def failures(table: str, result: ExpectationSuiteValidationResult, row_level: set[str],
             on_failure: dict[str, str]) -> tuple[list[FailedExpectation], dict[str, list[int]]]:
    """Failed expectations with their action, and the failing row indices of those that quarantine."""
    failed, rows = [], {}
    for r in result.results:
        if r.success:
            continue
        config, res = r.expectation_config, r.result or {}
        name, kwargs = config.meta["name"], config.kwargs
        error = _error_message(r.exception_info)
        locatable = name in row_level and error is None and "unexpected_index_list" in res
        action = on_failure[name] if locatable else STOP
        observed = error if error is not None else res.get("observed_value")
        failed.append(FailedExpectation(
            table=table, name=name, expectation=config.type,
            column=kwargs.get("column") or ", ".join(kwargs.get("column_list", [])) or None,
            action=action, unexpected_count=res.get("unexpected_count") if error is None else None,
            observed=None if observed is None else str(observed),
        ))
        if action == QUARANTINE:
            rows[name] = [int(i) for i in res["unexpected_index_list"]]
    return failed, rows


def split_rows(table: str, df: pd.DataFrame, rows: dict[str, list[int]]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(validated, quarantined): each failing row once, with every expectation it failed."""
    names_by_row: dict[int, list[str]] = {}
    for name, indices in rows.items():
        for i in indices:
            names_by_row.setdefault(i, []).append(name)
    bad = sorted(names_by_row)
    records = json.loads(df.loc[bad].to_json(orient="records"))
    quarantined = pd.DataFrame({
        "table": pd.Series([table] * len(bad), dtype="string"),
        "row": pd.Series(bad, dtype="int64"),
        "failed_expectations": pd.Series([sorted(names_by_row[i]) for i in bad], dtype=object),
        "values": pd.Series([json.dumps(rec, ensure_ascii=False) for rec in records], dtype="string"),
    })
    return df.drop(index=bad).reset_index(drop=True), quarantined


def _read_inputs(params: Params) -> dict[str, pd.DataFrame]:
    in_dir = params.path(params.ingest.out_dir)
    missing = [t for t in ORDER if not (in_dir / f"{t}.parquet").is_file()]
    if missing:
        raise DataSourceError(f"no ingested {', '.join(missing)} table in {in_dir}: run `interest ingest` first")
    return {t: read_parquet(in_dir / f"{t}.parquet").reset_index(drop=True) for t in ORDER}


def _suite_parameters(cfg: ValidateParams, table: str, now: int, catalogue: list[str]) -> dict[str, Any]:
    bounds = getattr(cfg.row_count, table)
    return {"now": now, "min_rows": bounds.min, "max_rows": bounds.max,
            "title_coverage_min": cfg.title_coverage_min, "catalogue_items": catalogue}


def validate(params: Params) -> ValidationReport:
    """Run the suites; write validated tables, quarantine and reports; raise if a `stop` check failed."""
    cfg = params.validation
    suite_dir = params.path(cfg.expectations_dir)
    suites = {t: load_suite(suite_dir / f"{t}.json") for t in ORDER}
    check_policies({t: exps for t, (_, exps) in suites.items()}, cfg.on_failure)
    row_level = {e.meta["name"] for _, exps in suites.values() for e in exps if is_row_level(e)}
    inputs = _read_inputs(params)

    reports_dir = params.path(cfg.reports_dir)
    docs_dir = reports_dir / "data_docs"
    shutil.rmtree(docs_dir, ignore_errors=True)  # the site shows this run only
    context = gx_context(docs_dir)
    source = context.data_sources.add_pandas(name="ingested")
    now = int(time.time())
    catalogue: list[str] = []
    tables, validated, quarantined = {}, {}, []
    for table in ORDER:
        df = inputs[table]
        suite_name, expectations = suites[table]
        result = run_checkpoint(context, source, table, suite_name, expectations, df,
                                _suite_parameters(cfg, table, now, catalogue))
        result_file = write_json(result.to_json_dict(), reports_dir / f"{table}.json")
        failed, rows = failures(table, result, row_level, cfg.on_failure)
        validated[table], q = split_rows(table, df, rows)
        quarantined.append(q)
        if table == "items":
            catalogue = sorted(validated[table]["item"].dropna().unique().tolist())
        tables[table] = TableReport(table, bool(result.success), len(df), len(validated[table]), len(q),
                                    tuple(failed), str(result_file))
        log.info("%s: %d rows, %d quarantined%s", table, len(df), len(q),
                 "".join(f"\n  {f.describe()}" for f in failed))

    context.build_data_docs(site_names=[DOCS_SITE])
    stopped = any(f.action == STOP for t in tables.values() for f in t.failed)
    paths = {**validated_paths(params), "quarantine": quarantine_path(params)}
    outputs: dict[str, str] = {}
    if stopped:  # no stale tables from an earlier run for the next step to pick up
        for path in paths.values():
            path.unlink(missing_ok=True)
    else:
        outputs = {t: str(write_parquet(validated[t], paths[t])) for t in ORDER}
        outputs["quarantine"] = str(write_parquet(pd.concat(quarantined, ignore_index=True),
                                                  paths["quarantine"]))
    summary_file = reports_dir / "summary.json"
    report = ValidationReport(tables, stopped, outputs, str(docs_dir / "index.html"), str(summary_file))
    write_json(asdict(report), summary_file)
    if stopped:
        raise DataValidationError(report.summary())
    log.info("%s", report.summary())
    return report


def run(params: Params) -> dict:
    """Pipeline step `validate`."""
    return asdict(validate(params))
