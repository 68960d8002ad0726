"""The command line: simulate, then run headless end to end, incrementally."""

import os
import subprocess
import sys
from pathlib import Path

from sqlalchemy import create_engine, func, select

from lightcurver_dagster.cli import _contiguous_ranges, main
from lightcurver_ops.config import CONFIG_ENV_VAR
from lightcurver_ops.db.schema import frames


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    """Run ``lightcurver-dagster`` as a user would, in its own process."""
    environment = {
        key: value for key, value in os.environ.items() if key not in ("DAGSTER_HOME", CONFIG_ENV_VAR)
    }
    command = [sys.executable, "-m", "lightcurver_dagster.cli", *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=600, env=environment)


def test_simulate_then_run_is_incremental(tmp_path: Path):
    out = tmp_path / "data"
    assert cli("simulate", str(out), "--frames", "2", "--size", "256").returncode == 0
    config = out / "config.yaml"
    assert config.is_file() and len(list((out / "raw").glob("*.fits"))) == 2

    run = cli("run", str(config))
    assert run.returncode == 0, run.stderr[-3000:]
    printed = run.stdout
    assert (
        "2 frames registered" in printed
        and "calibrated_frame, plate_solution: 2 frames to process" in printed
    )
    assert "frames: 2 imported, 2 usable, 0 eliminated" in printed
    assert f"light curves in {out / 'light_curves'}" in printed
    assert len(list((out / "light_curves").glob("*_photometry_per_epoch.csv"))) == 1
    engine = create_engine(f"sqlite:///{out / 'database.sqlite3'}")
    with engine.connect() as connection:
        assert connection.execute(select(func.count()).select_from(frames)).scalar_one() == 2
    assert (out / "dagster_home" / "dagster.yaml").is_file()

    again = cli("run", str(config))
    assert again.returncode == 0
    assert "calibrated_frame, plate_solution: 0 frames to process" in again.stdout
    assert "roi_cube, roi_model: up to date" in again.stdout


def test_bad_config_exits_with_a_message(tmp_path: Path, capsys):
    config = tmp_path / "config.yaml"
    config.write_text("workdir: /x\nraw_dirs: [r]\nROI: {Q: {coordinates: [1, 2]}}\nstamp_size_ROI: huge\n")
    assert main(["run", str(config)]) == 2  # refused before anything runs
    assert "stamp_size_ROI" in capsys.readouterr().err


def test_contiguous_ranges_split_on_gaps_and_size():
    ordered = ["a", "b", "c", "d", "e", "f"]
    assert _contiguous_ranges(ordered, {"a", "b", "d", "e", "f"}, 2) == [("a", "b"), ("d", "e"), ("f", "f")]
