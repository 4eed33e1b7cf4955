"""Feedback events, checked with the Great Expectations suite expectations/feedback.json before
they may become training data: rows that fail a row-level expectation (unknown item or event
kind, missing ids, a shopper sending more than monitor.max_events_per_minute events a minute, a
rating out of range) are quarantined with the expectations they failed; a failed table-level
expectation (the schema) refuses the whole window, and the report says why."""
from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import pandas as pd

from components.data.validate import (STOP, FailedExpectation, check_policies, failures, gx_context,
                                      is_row_level, load_suite, run_checkpoint, split_rows)
from components.feedback.events import EVENT_KINDS

SUITE = "feedback"
MINUTE = 60.0


@dataclass(frozen=True)
class FeedbackCheck:
    valid: pd.DataFrame
    quarantined: pd.DataFrame      # row, failed_expectations, values (as validate's quarantine)
    failed: tuple[FailedExpectation, ...]
    refused: bool                  # a table-level expectation failed: nothing of this window is used

    def summary(self) -> dict:
        return {"rows": len(self.valid) + len(self.quarantined), "valid": len(self.valid),
                "quarantined": len(self.quarantined), "refused": self.refused,
                "failed": [asdict(f) | {"why": f.describe()} for f in self.failed]}


def with_flood_counts(events: pd.DataFrame) -> pd.DataFrame:
    """events plus events_in_user_minute: the shopper's events in the same minute of arrival."""
    minute = (events["received_at"] // MINUTE).astype("int64")
    return events.assign(events_in_user_minute=events.groupby([events["user"], minute])["event_id"]
                         .transform("size").astype("int64"))


def check_feedback(events: pd.DataFrame, catalogue: list[str], max_events_per_minute: int,
                   expectations_dir: Path, on_failure: dict[str, str], docs_dir: Path) -> FeedbackCheck:
    suite_name, expectations = load_suite(expectations_dir / f"{SUITE}.json")
    check_policies({SUITE: expectations}, on_failure)
    row_level = {e.meta["name"] for e in expectations if is_row_level(e)}
    df = with_flood_counts(events.reset_index(drop=True))
    context = gx_context(docs_dir)
    result = run_checkpoint(context, context.data_sources.add_pandas(name="feedback"), SUITE, suite_name,
                            expectations, df, {"event_kinds": list(EVENT_KINDS), "catalogue_items": catalogue,
                                               "max_events_per_minute": max_events_per_minute})
    failed, rows = failures(SUITE, result, row_level, on_failure)
    stopped = [f.name for f in failed if f.action == STOP]
    if stopped:   # the whole window is held back, every row under the checks that refused it
        rows = {name: list(range(len(df))) for name in stopped}
    valid, quarantined = split_rows(SUITE, df, rows)
    return FeedbackCheck(valid.drop(columns="events_in_user_minute"), quarantined, tuple(failed), bool(stopped))


def quarantine_reasons(check: FeedbackCheck) -> dict[str, int]:
    """How many quarantined rows failed each expectation."""
    counts: dict[str, int] = {}
    for names in check.quarantined["failed_expectations"]:
        for name in names:
            counts[name] = counts.get(name, 0) + 1
    return counts

