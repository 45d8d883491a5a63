"""Console scripts for the Hydra entry points, which live in scripts/ beside conf/ (Hydra finds the config
relative to the script): each runs its script as `python scripts/NAME.py` would. For a source checkout."""

from __future__ import annotations

import runpy
import sys
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parents[2]  # not from environment.py, which imports torch


def _script(name: str) -> None:
    path = PROJECT_ROOT / "scripts" / f"{name}.py"
    if not path.is_file():
        sys.exit(f"error: {path} not found: this console script needs the project's source checkout")
    sys.argv[0] = str(path)
    runpy.run_path(str(path), run_name="__main__")


def run() -> None:
    _script("run")
