"""Monitoring's checked feedback windows as files: under monitor.out_dir each window is
<window>.parquet (the events that passed the checks) beside <window>.quarantine.parquet (those
that did not). Monitoring writes them; the feedback report reads the valid ones. Both take the
names from here, since analysis may not import monitoring."""
from __future__ import annotations

from pathlib import Path

QUARANTINE_SUFFIX = ".quarantine.parquet"


def window_paths(folder: Path, name: str) -> dict[str, Path]:
    """Where the window's valid events and its quarantine go."""
    return {"valid": folder / f"{name}.parquet", "quarantine": folder / f"{name}{QUARANTINE_SUFFIX}"}


def valid_window_files(folder: Path) -> list[Path]:
    """Every window's valid events, oldest name first; quarantined events stay out."""
    return sorted(p for p in folder.glob("*.parquet") if not p.name.endswith(QUARANTINE_SUFFIX))
