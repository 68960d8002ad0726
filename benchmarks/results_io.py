"""Printing and saving benchmark figures (one JSON file per benchmark under ``results/``)."""

import json
import platform
from pathlib import Path
from typing import Any

RESULTS_DIR = Path(__file__).parent / "results"


def report(name: str, figures: dict[str, Any]) -> Path:
    """Print ``figures`` one per line and write them, with the machine, to ``results/<name>.json``."""
    figures = figures | {"machine": f"{platform.machine()}, Python {platform.python_version()}"}
    for key, value in figures.items():
        print(f"{key:36s} {value:.4f}" if isinstance(value, float) else f"{key:36s} {value}")
    RESULTS_DIR.mkdir(exist_ok=True)
    path = RESULTS_DIR / f"{name}.json"
    path.write_text(json.dumps(figures, indent=2))
    print(f"written {path}")
    return path
