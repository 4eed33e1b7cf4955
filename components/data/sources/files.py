"""Reading the mirror's files: gzip or plain text, JSON, TSV; damaged files become one clear error."""
from __future__ import annotations

import ast
import gzip
import json
import zlib
from pathlib import Path
from typing import Callable, Iterator, TypeVar

import pandas as pd
from tqdm.auto import tqdm

from components.core.errors import DataSourceError

T = TypeVar("T")


def open_text(path: Path):
    return gzip.open(path, "rt", encoding="utf-8") if path.suffix == ".gz" else open(path, encoding="utf-8")


def read_guarded(path: Path, reader: Callable[[Path], T]) -> T:
    """Run reader(path), turning corrupt, truncated or mis-encoded files into one clear error."""
    try:
        return reader(path)
    except (EOFError, gzip.BadGzipFile, zlib.error, OSError) as exc:
        if isinstance(exc, FileNotFoundError):
            raise DataSourceError(f"{path}: file not found") from exc
        raise DataSourceError(
            f"{path} is truncated or not a valid gzip file ({exc}); copy it again or delete it so "
            "the original can be downloaded"
        ) from exc
    except UnicodeDecodeError as exc:
        raise DataSourceError(
            f"{path} is not UTF-8 text (byte {exc.start}: {exc.reason}); convert it to UTF-8"
        ) from exc


def iter_lines(path: Path, desc: str) -> Iterator[tuple[int, str]]:
    """(line number, line) of every non-blank line, with a progress bar on long files."""
    with open_text(path) as fh:
        for lineno, line in enumerate(tqdm(fh, desc=desc, unit=" lines", mininterval=2, leave=False), 1):
            if line.strip():
                yield lineno, line


def parse_record(path: Path, lineno: int, line: str) -> dict:
    """One JSON-lines record; the 2014 metadata files use Python literals instead of JSON."""
    try:
        return json.loads(line)
    except json.JSONDecodeError:
        try:
            return ast.literal_eval(line)
        except (ValueError, SyntaxError) as exc:
            raise DataSourceError(f"{path}, line {lineno}: not a JSON or Python record ({exc})") from exc


def read_json_file(path: Path) -> dict:
    def reader(p: Path) -> dict:
        with open_text(p) as fh:
            try:
                return json.load(fh)
            except json.JSONDecodeError as exc:
                raise DataSourceError(f"{p}: not valid JSON ({exc})") from exc
    return read_guarded(path, reader)


def read_tsv_map(path: Path) -> dict[str, str]:
    """First column -> second column of a TSV with a header row."""
    df = read_guarded(path, lambda p: pd.read_csv(p, sep="\t", dtype=str, encoding="utf-8"))
    return dict(zip(df.iloc[:, 0], df.iloc[:, 1]))


def first_match(folder: Path, *patterns: str) -> Path | None:
    """The first file (sorted) matching the first pattern that matches anything."""
    for pattern in patterns:
        hits = sorted(folder.glob(pattern))
        if hits:
            return hits[0]
    return None
