"""Where the project and its virtualenv's commands are: for the steps that start a command
(`bentoml build`, `bentoml serve`) with the interpreter's own environment."""
from __future__ import annotations

import sys
from pathlib import Path

PROJECT_DIR = Path(__file__).resolve().parents[2]
BIN = Path(sys.prefix) / "bin"
