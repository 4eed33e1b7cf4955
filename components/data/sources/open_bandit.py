"""The Open Bandit Dataset (ZOZOTOWN) as the mirror holds it: one campaign's impressions logged by
one policy (`random` or `bts`), with their true propensities."""
from __future__ import annotations

from pathlib import Path

import pandas as pd

from components.core.errors import DataSourceError

USER_FEATURES = ["user_feature_0", "user_feature_1", "user_feature_2", "user_feature_3"]


def read_campaign(folder: Path, policy: str, campaign: str) -> pd.DataFrame:
    """timestamp, item_id, position, click, propensity_score, the user features and the per-item
    affinities (`user-item_affinity_<item>`), oldest first."""
    path = folder / policy / campaign / f"{campaign}.csv.gz"
    if not path.is_file():
        raise DataSourceError(f"{path}: no Open Bandit logs of policy {policy!r}, campaign {campaign!r} "
                              f"(the mirror's open-bandit folder holds {{random,bts}}/{{men,women}})")
    logs = pd.read_csv(path, index_col=0)
    missing = {"item_id", "position", "click", "propensity_score", *USER_FEATURES} - set(logs.columns)
    if missing:
        raise DataSourceError(f"{path}: columns {sorted(missing)} are missing")
    return logs.sort_values("timestamp", kind="stable").reset_index(drop=True)
