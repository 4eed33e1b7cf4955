"""What every source reader returns: the tables as read, before typing and pseudonymisation."""
from __future__ import annotations

from dataclasses import dataclass, field

import pandas as pd

REVIEW_COLUMNS = ("user", "item", "rating", "summary", "text", "timestamp")


@dataclass(frozen=True)
class RawTables:
    """interactions (user, item, position[, timestamp, rating]), items (item[, title, ...]) and
    reviews; `source` names the layout (`format`) and every file read."""

    interactions: pd.DataFrame
    items: pd.DataFrame
    reviews: pd.DataFrame
    source: dict[str, str] = field(default_factory=dict)


def no_reviews() -> pd.DataFrame:
    return pd.DataFrame(columns=list(REVIEW_COLUMNS))
