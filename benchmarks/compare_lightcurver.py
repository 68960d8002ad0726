"""lightcurver 1.2.4 against lightcurver-dagster on one simulated data set: time, memory, accuracy.

Simulates one data set (``lightcurver_ops.simulate``), then runs on it, one after the other:

- lightcurver 1.2.4's whole pipeline (its ``WorkflowManager``, every task from the database to the
  ROI model) in a subprocess of a separate virtualenv, ``.bench-venvs/lightcurver-1.2.4`` (created
  with ``pip install lightcurver==1.2.4 'pandas<3'`` when missing: with pandas 3 its zero-point task
  fails; lightcurver is never imported here). Its
  config is its own template (every default, iteration counts included) with this data set's paths,
  ROI, ROI size, disk radius and point sources. The frames carry their true WCS, so
  ``already_plate_solved: 1`` (no astrometry.net). Its Gaia query is answered from the simulated
  catalogue at the astroquery boundary (``benchmarks/lightcurver_driver.py``); nothing else changes.
- ``lightcurver-dagster run`` on a copy of the data set with the simulator's config (lightcurver's
  template values plus the local catalogue), twice: with an empty JAX compilation cache (the first
  run on a machine: every program compiles) and, on a fresh copy, with the cache that run filled
  (every later run, whatever the data). Accuracy is the second run's (the results are the same).

Each gets its wall time (per lightcurver task, per dagster wave, total), time per frame and peak
resident memory (largest process of its tree, from ``wait4``). Accuracy against the injected truth:
per quasar image the RMS (mmag) of the light curve after one global scale, chi2/dof of the reported
uncertainties about it, the fraction of frames returned; the RMS (mmag) of the normalisation
coefficients against the injected transparency after one global scale; and the data set's
photon-noise limit per image (RMS over the frames of :func:`lightcurver_ops.simulate.photon_noise_limit`).
Figures go to ``benchmarks/results/compare_lightcurver.json``.

    .venv/bin/python -m benchmarks.compare_lightcurver [--frames 24] [--size 2048] [--workdir DIR]
        [--seed 1] [--exptime 300] [--lightcurver-from benchmarks/results/compare_lightcurver.json]

``--lightcurver-from`` takes lightcurver's figures (times, memory, accuracy) from an earlier result
file of the same data set instead of running it again (the simulation is deterministic and
lightcurver does not change): for re-measuring this project alone after a change.

Without ``--workdir`` the work happens in a temporary directory that is removed afterwards; with it,
``DIR/dataset`` (simulated), ``DIR/lightcurver``, ``DIR/dagster_cold``, ``DIR/dagster_warm`` (work
directories and logs) and ``DIR/jax_cache`` stay for inspection (an existing DIR is emptied first).
"""

import argparse
import csv
import json
import os
import re
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from benchmarks.results_io import report
from lightcurver_ops.psf import SHARED_CACHE_ENV_VAR
from lightcurver_ops.simulate import SimulationSpec, SimulationTruth, photon_noise_limit, simulate_dataset

LIGHTCURVER_VERSION = "1.2.4"
LIGHTCURVER_REQUIREMENTS = (f"lightcurver=={LIGHTCURVER_VERSION}", "pandas<3")
"""pandas 3 makes lightcurver 1.2.4 fail in calculate_absolute_zeropoints (``pd.unique`` of a list)."""
REPO = Path(__file__).resolve().parents[1]
BENCH_VENV = REPO / ".bench-venvs" / f"lightcurver-{LIGHTCURVER_VERSION}"
DRIVER = Path(__file__).resolve().parent / "lightcurver_driver.py"
MMAG = 2500 / np.log(10)  # mmag per unit relative flux error

DATASET_KEYS = (
    "workdir",
    "raw_dirs",
    "ROI",
    "ROI_size",
    "telescope",
    "plate_scale_interval",
    "already_plate_solved",
    "ROI_disk_radius_arcseconds",
    "star_min_gmag",
    "star_max_gmag",
    "stamp_size_stars",
    "stamp_size_ROI",
    "photometric_band",
    "point_sources",
)
"""Keys of lightcurver's template that take this data set's values; every other key keeps the template's."""

DAGSTER_WAVE = re.compile(r"^([a-z_]+(?:, [a-z_]+)*)(?:: (?:\d+ frames to process|up to date))?$")


@dataclass
class Measured:
    """A finished subprocess: exit status, wall time, peak RSS and when each output line arrived."""

    returncode: int
    wall_s: float
    peak_rss_mib: float
    lines: list[tuple[float, str]] = field(default_factory=list)


def run_measured(command: list[str], log_path: Path, env: dict[str, str]) -> Measured:
    """Run ``command``, copy its output to ``log_path`` with arrival times, measure it.

    The peak RSS is ``ru_maxrss`` of ``wait4`` on the child: the largest of the child and its
    waited-for descendants (multiprocessing workers included), not their sum.
    """
    start = time.perf_counter()
    lines: list[tuple[float, str]] = []
    with log_path.open("w") as log:
        process = subprocess.Popen(
            command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env, bufsize=1
        )
        assert process.stdout is not None
        for line in process.stdout:
            lines.append((time.perf_counter() - start, line.rstrip("\n")))
            log.write(line)
            log.flush()
        _, status, usage = os.wait4(process.pid, 0)
        process.returncode = os.waitstatus_to_exitcode(status)
    wall = time.perf_counter() - start
    return Measured(process.returncode, wall, usage.ru_maxrss / 1024, lines)


def print_tail(name: str, measured: Measured, n: int = 30) -> None:
    print(f"{name} failed (exit status {measured.returncode}); the end of its log:", flush=True)
    print("\n".join(line for _, line in measured.lines[-n:]), flush=True)


def ensure_lightcurver_venv(venv: Path = BENCH_VENV) -> Path:
    """The Python of a virtualenv holding lightcurver, created and installed if missing."""
    python = venv / "bin" / "python"
    code = (
        "import lightcurver, pandas, importlib.metadata as m; "
        "print(m.version('lightcurver'), pandas.__version__)"
    )
    check = [str(python), "-c", code]
    if python.exists():
        found = subprocess.run(check, capture_output=True, text=True)
        versions = found.stdout.split()
        if found.returncode == 0 and versions[0] == LIGHTCURVER_VERSION and versions[1].startswith("2."):
            return python
    print(f"creating {venv} with {' '.join(LIGHTCURVER_REQUIREMENTS)} (a few minutes)", flush=True)
    venv.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run([sys.executable, "-m", "venv", "--clear", str(venv)], check=True)
    subprocess.run([str(python), "-m", "pip", "install", "--quiet", *LIGHTCURVER_REQUIREMENTS], check=True)
    found = subprocess.run(check, capture_output=True, text=True, check=True)
    print("lightcurver {} with pandas {} installed".format(*found.stdout.split()), flush=True)
    return python


def lightcurver_template(python: Path) -> dict[str, Any]:
    """lightcurver's shipped example config (the template its workflow manager checks keys against)."""
    code = (
        "from importlib import resources; "
        "print(resources.files('lightcurver.pipeline.example_config_file') / 'config.yaml')"
    )
    found = subprocess.run([str(python), "-c", code], capture_output=True, text=True, check=True)
    return yaml.safe_load(Path(found.stdout.strip()).read_text())


def write_lightcurver_config(template: dict[str, Any], dataset: dict[str, Any], workdir: Path) -> Path:
    """lightcurver's template with the data set's keys, pointing at ``workdir``."""
    workdir.mkdir(parents=True)
    shutil.copytree(Path(dataset["workdir"]) / "header_parser", workdir / "header_parser")
    config = template | {key: dataset[key] for key in DATASET_KEYS} | {"workdir": str(workdir)}
    path = workdir / "config.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def copy_dataset(dataset_dir: Path, workdir: Path) -> Path:
    """Copy the simulated work directory to ``workdir`` (config re-pointed there); returns the config."""
    shutil.copytree(dataset_dir, workdir, ignore=shutil.ignore_patterns("truth.json"))
    path = workdir / "config.yaml"
    config = yaml.safe_load(path.read_text())
    config["workdir"] = str(workdir)
    config["raw_dirs"] = [str(workdir / "raw")]
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def config_differences(a: dict[str, Any], b: dict[str, Any]) -> str:
    """Keys whose values differ between two configs (paths left out)."""
    keys = sorted((set(a) | set(b)) - {"workdir", "raw_dirs"}, key=str)
    return ", ".join(f"{k}: {a.get(k, '-')!r} vs {b.get(k, '-')!r}" for k in keys if a.get(k) != b.get(k))


def subprocess_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONUNBUFFERED"] = "1"
    env.pop("LIGHTCURVER_DATABASE_URL", None)
    env.pop("LIGHTCURVER_CONFIG", None)
    env.pop("DAGSTER_HOME", None)
    return env


def dagster_waves(measured: Measured) -> dict[str, float]:
    """Wall time of each wave printed by ``lightcurver-dagster run`` (start of one to start of the next)."""
    starts = [(t, m.group(1)) for t, line in measured.lines if (m := DAGSTER_WAVE.match(line))]
    ends = [t for t, _ in starts[1:]] + [measured.wall_s]
    waves: dict[str, float] = {}
    for (start, name), end in zip(starts, ends, strict=True):
        waves[name] = waves.get(name, 0.0) + end - start
    return waves


# --------------------------------------------------------------------------------------- accuracy


def frame_index(truth: SimulationTruth) -> dict[str, int]:
    """Truth frame index by file stem (``frame_0001``)."""
    return {Path(f.file_name).stem: i for i, f in enumerate(truth.frames)}


def frame_stems(database: Path, column: str) -> dict[int, str]:
    """Database frame id -> raw file stem, from ``frames.<column>`` (a path or a partition key)."""
    with sqlite3.connect(database) as connection:
        rows = connection.execute(f"SELECT id, {column} FROM frames").fetchall()
    return {int(i): Path(str(value)).stem for i, value in rows}


def normalization(database: Path) -> dict[int, float]:
    """Frame id -> normalisation coefficient of the set (footprint or star-set hash) with most frames."""
    with sqlite3.connect(database) as connection:
        rows = connection.execute(
            "SELECT * FROM normalization_coefficients WHERE coefficient IS NOT NULL"
        ).fetchall()
        names = [d[0] for d in connection.execute("SELECT * FROM normalization_coefficients").description]
    key = next(n for n in names if n.endswith("_hash"))
    sets: dict[Any, dict[int, float]] = {}
    for row in rows:
        values = dict(zip(names, row, strict=True))
        sets.setdefault(values[key], {})[int(values["frame_id"])] = float(values["coefficient"])
    return max(sets.values(), key=len) if sets else {}


def read_light_curves(path: Path) -> list[dict[str, str]]:
    with path.open() as f:
        return list(csv.DictReader(f))


def accuracy(
    prefix: str,
    truth: SimulationTruth,
    curves: list[dict[str, str]],
    coefficients: dict[int, float],
    stems: dict[int, str],
) -> dict[str, float]:
    """Light-curve and normalisation accuracy of one system against the truth (figures keyed by prefix)."""
    index = frame_index(truth)
    n_frames = len(truth.frames)
    figures: dict[str, float] = {}
    epochs = [index[stems[int(float(row["frame_id"]))]] for row in curves]
    figures[f"{prefix}_frames_returned_fraction"] = len(set(epochs)) / n_frames
    for q in truth.quasar_images:
        measured = np.array([float(row[f"{q.label}_flux"]) for row in curves])
        errors = np.array([float(row[f"{q.label}_d_flux"]) for row in curves])
        injected = np.array([q.flux_e_per_s_per_frame[i] for i in epochs])
        good = np.isfinite(measured) & np.isfinite(errors) & (errors > 0)
        if good.sum() < 2:
            figures[f"{prefix}_{q.label}_rms_mmag"] = float("nan")
            figures[f"{prefix}_{q.label}_chi2_dof"] = float("nan")
            continue
        measured, errors, injected = measured[good], errors[good], injected[good]
        # one global scale per image, the weighted least-squares one
        scale = np.sum(measured * injected / errors**2) / np.sum(injected**2 / errors**2)
        residual = measured / (scale * injected) - 1
        figures[f"{prefix}_{q.label}_rms_mmag"] = float(MMAG * np.sqrt(np.mean(residual**2)))
        figures[f"{prefix}_{q.label}_chi2_dof"] = float(
            np.sum((measured - scale * injected) ** 2 / errors**2) / (len(measured) - 1)
        )
        figures[f"{prefix}_{q.label}_median_error_mmag"] = float(MMAG * np.median(errors / measured))
    frames = [(index[stems[i]], c) for i, c in coefficients.items() if stems.get(i) in index]
    figures[f"{prefix}_normalized_frames_fraction"] = len(frames) / n_frames
    if len(frames) >= 2:
        ratio = np.array([c / truth.frames[i].transparency for i, c in frames])
        figures[f"{prefix}_normalization_rms_mmag"] = float(MMAG * np.std(ratio / np.mean(ratio)))
    return figures


def photon_limits(truth: SimulationTruth) -> dict[str, float]:
    """Per image: RMS over all frames of the photon-noise limit of its relative flux (mmag)."""
    limits = [photon_noise_limit(truth, i) for i in range(len(truth.frames))]
    return {
        f"photon_limit_{q.label}_mmag": float(MMAG * np.sqrt(np.mean([lim[q.label] ** 2 for lim in limits])))
        for q in truth.quasar_images
    }


# ------------------------------------------------------------------------------------------- main


def run_lightcurver(
    python: Path, lc_config_path: Path, catalog: Path, truth: SimulationTruth, env: dict[str, str]
) -> dict[str, Any]:
    """lightcurver 1.2.4 with ``lc_config_path`` (in its work directory): its ``lightcurver_*`` figures."""
    lc_dir = lc_config_path.parent
    roi = next(iter(yaml.safe_load(lc_config_path.read_text())["ROI"]))
    timings_path = lc_dir / "task_timings.json"
    print(f"running lightcurver {LIGHTCURVER_VERSION} in {lc_dir} (log: {lc_dir / 'run.log'})", flush=True)
    lc = run_measured(
        [str(python), str(DRIVER), str(lc_config_path), str(catalog), str(timings_path)],
        lc_dir / "run.log",
        env,
    )
    figures: dict[str, Any] = {
        "lightcurver_exit_status": lc.returncode,
        "lightcurver_total_s": lc.wall_s,
        "lightcurver_s_per_frame": lc.wall_s / len(truth.frames),
        "lightcurver_peak_rss_mib": lc.peak_rss_mib,
    }
    if timings_path.exists():
        for task, seconds in json.loads(timings_path.read_text())["tasks"].items():
            figures[f"lightcurver_{task}_s"] = seconds
    if lc.returncode != 0:
        print_tail("lightcurver", lc)
    lc_db = lc_dir / "database.sqlite3"
    lc_curves = sorted((lc_dir / "prepared_roi_cutouts").glob(f"*_{roi}_photometry_per_epoch.csv"))
    if lc_db.exists():
        rows = read_light_curves(lc_curves[-1]) if lc_curves else []
        stems = frame_stems(lc_db, "image_relpath")
        figures |= accuracy("lightcurver", truth, rows, normalization(lc_db), stems)
    return figures


def earlier_lightcurver_figures(path: Path, run: dict[str, Any]) -> dict[str, Any]:
    """The ``lightcurver_*`` figures of an earlier result file of this script on the same data set.

    Raises
    ------
    ValueError
        If that file's data set (frames, size, seed, exposure) or lightcurver version differs.
    """
    earlier = json.loads(path.read_text())
    different = [k for k, v in run.items() if earlier.get(k) != v]
    if different:
        raise ValueError(f"{path} was measured on another data set or version: {', '.join(different)} differ")
    return {k: v for k, v in earlier.items() if k.startswith("lightcurver_")}


def compare(
    root: Path, n_frames: int, size: int, seed: int, exptime: float, lightcurver_from: Path | None = None
) -> dict[str, Any]:
    dataset_dir = root / "dataset"
    spec = SimulationSpec(n_frames=n_frames, nx=size, ny=size, seed=seed, exptime=exptime)
    start = time.perf_counter()
    truth = simulate_dataset(dataset_dir, spec)
    print(f"simulated {n_frames} frames of {size}x{size} in {time.perf_counter() - start:.1f} s", flush=True)
    dataset = yaml.safe_load((dataset_dir / "config.yaml").read_text())

    figures: dict[str, Any] = {"frames": n_frames, "frame_size": size, "seed": seed, "exptime_s": exptime}
    figures["lightcurver_version"] = LIGHTCURVER_VERSION
    env = subprocess_env()

    # lightcurver 1.2.4, its own template config (or its figures from an earlier run on this data set)
    python = ensure_lightcurver_venv()
    lc_config_path = write_lightcurver_config(lightcurver_template(python), dataset, root / "lightcurver")
    if lightcurver_from is None:
        catalog = dataset_dir / dataset["gaia_catalog_file"]
        figures |= run_lightcurver(python, lc_config_path, catalog, truth, env)
    else:
        figures |= earlier_lightcurver_figures(lightcurver_from, figures)
    lc_ok = figures.get("lightcurver_exit_status") == 0

    # lightcurver-dagster on a copy of the data set, twice: first with an empty JAX compilation cache
    # (a first run on a new machine), then on a fresh copy with the cache the first run filled (every
    # later run: the compiled programs depend on shapes and settings, not on the data)
    dg_env = env | {SHARED_CACHE_ENV_VAR: str(root / "jax_cache")}
    for run in ("cold", "warm"):
        dg_dir = root / f"dagster_{run}"
        dg_config_path = copy_dataset(dataset_dir, dg_dir)
        print(
            f"running lightcurver-dagster ({run} JAX cache) in {dg_dir} (log: {dg_dir / 'run.log'})",
            flush=True,
        )
        dg = run_measured(
            [sys.executable, "-m", "lightcurver_dagster.cli", "run", str(dg_config_path)],
            dg_dir / "run.log",
            dg_env,
        )
        prefix = f"dagster_{run}"
        figures[f"{prefix}_exit_status"] = dg.returncode
        figures[f"{prefix}_total_s"] = dg.wall_s
        figures[f"{prefix}_s_per_frame"] = dg.wall_s / n_frames
        figures[f"{prefix}_peak_rss_mib"] = dg.peak_rss_mib
        for wave, seconds in dagster_waves(dg).items():
            figures[f"{prefix}_{wave.replace(', ', '+')}_s"] = seconds
        if dg.returncode != 0:
            print_tail(f"lightcurver-dagster ({run})", dg)
        if lc_ok and dg.returncode == 0:
            figures[f"speed_ratio_{run}"] = figures["lightcurver_total_s"] / dg.wall_s
    dg_config = yaml.safe_load(dg_config_path.read_text())
    lc_config = yaml.safe_load(lc_config_path.read_text())
    figures["config_differences"] = config_differences(lc_config, dg_config)

    # accuracy
    figures |= photon_limits(truth)
    roi = next(iter(dataset["ROI"]))
    dg_db = dg_dir / "database.sqlite3"
    dg_curves = dg_dir / "light_curves" / f"{roi}_photometry_per_epoch.csv"
    if dg_db.exists():
        rows = read_light_curves(dg_curves) if dg_curves.exists() else []
        figures |= accuracy("dagster", truth, rows, normalization(dg_db), frame_stems(dg_db, "partition_key"))
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=24)
    parser.add_argument("--size", type=int, default=2048, help="frame side, pixels")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--exptime", type=float, default=SimulationSpec.exptime, help="s, per frame")
    parser.add_argument("--workdir", type=Path, default=None, help="kept afterwards (emptied first)")
    parser.add_argument(
        "--lightcurver-from",
        type=Path,
        default=None,
        help="take lightcurver's figures from this earlier result file (same data set) instead of running it",
    )
    args = parser.parse_args()
    options = (args.frames, args.size, args.seed, args.exptime, args.lightcurver_from)
    if args.workdir is None:
        with tempfile.TemporaryDirectory() as tmp:
            figures = compare(Path(tmp), *options)
    else:
        root = args.workdir.resolve()
        if root.exists():
            shutil.rmtree(root)
        root.mkdir(parents=True)
        figures = compare(root, *options)
    report("compare_lightcurver", figures)


if __name__ == "__main__":
    main()
