"""Evidently 0.7 data-quality report of a window's incoming feedback, every event as received
(quarantined ones too: the report shows what the shop sent, the check what was kept)."""
from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

import components.monitoring.pandas_compat  # noqa: F401  (before evidently: it imports a name pandas 3 removed)
from evidently import DataDefinition, Dataset, Report
from evidently.presets import DataSummaryPreset

CATEGORICAL = ["kind", "arm", "model_tag"]
NUMERICAL = ["position", "propensity", "rating", "delay_seconds"]
FILE = "quality"
FIGURES = {"RowCount": "rows", "DatasetMissingValueCount": "missing_values", "DuplicatedRowCount": "duplicated_rows"}


def quality_frame(events: pd.DataFrame) -> pd.DataFrame:
    """The columns worth summarising; delay_seconds: arrival after the client's own time."""
    categories = events.reindex(columns=CATEGORICAL).astype(object)
    out = categories.where(categories.notna(), None)
    for column in ("position", "propensity", "rating"):
        out[column] = pd.to_numeric(events[column], errors="coerce").astype(float)
    out["delay_seconds"] = (pd.to_numeric(events["received_at"], errors="coerce")
                            - pd.to_numeric(events["at"], errors="coerce")).astype(float)
    return out.reset_index(drop=True)


def figures(report: dict) -> dict:
    """Row count, missing values and duplicated rows as the report's JSON states them."""
    out = {}
    for metric in report["metrics"]:
        key = FIGURES.get(metric["config"]["type"].rsplit(":", 1)[-1])
        if key and key not in out:
            value = metric["value"]
            out[key] = int(value["count"] if isinstance(value, dict) else value)
    return out


def quality_report(events: pd.DataFrame, out_dir: Path) -> dict:
    """out_dir/quality.html and .json, and the figures read back; nothing for an empty window."""
    if events.empty:
        return {"rows": 0, "html": None}
    frame = quality_frame(events)
    definition = DataDefinition(categorical_columns=CATEGORICAL, numerical_columns=NUMERICAL)
    snapshot = Report([DataSummaryPreset()]).run(Dataset.from_pandas(frame, data_definition=definition))
    out_dir.mkdir(parents=True, exist_ok=True)
    snapshot.save_html(str(out_dir / f"{FILE}.html"))
    snapshot.save_json(str(out_dir / f"{FILE}.json"))
    return {**figures(json.loads((out_dir / f"{FILE}.json").read_text())), "html": str(out_dir / f"{FILE}.html")}
