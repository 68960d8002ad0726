"""Cost of adding one frame to an already processed data set of N frames, for N = 12, 48, 192,
for this project and for lightcurver 1.2.4.

For each N: simulate N + 1 small frames, process the first N through every asset in Dagster (a
temporary instance, in-process runs, as ``lightcurver-dagster run`` does), then drop the last frame
and time what the arrival of each of the next frames costs (three by default, one after the
other; the median is reported, as a frame's PSF fit runs until it converges and its iteration count
varies from frame to frame): the raw-frames sensor's run (``calibrated_frame``,
``plate_solution``), the frame's own partition of every later per-frame asset, and the all-frames
assets that follow the frames (``footprints``, ``light_curves``). The baselines (reference stars,
normalisation reference fluxes, ROI model) are not rebuilt: that is the nightly cron's job. The goal
is a cost flat in N. One JAX compilation cache serves every N (the first N pays the one-frame
programs' compilation unless the cache already holds them).

lightcurver (``--system lightcurver``, in its own virtualenv as in
:mod:`benchmarks.compare_lightcurver`, its template config with the data set's keys) processes the
same N frames with its ``WorkflowManager``; then each late frame is dropped into its raw directory and
the whole workflow runs again, as a lightcurver user does every night: its per-frame tasks skip the
frames already done, its normalisation and ROI tasks redo all frames. The seconds of each task come
from the driver's timings.

    .venv/bin/python -m benchmarks.incremental [--system dagster|lightcurver|both] [--sizes 12 48 192]
        [--size 384] [--late 3] [--workdir DIR]

With ``--workdir`` (one system, one size) the work stays in DIR; lightcurver's set-up at N = 192
takes about three hours here, so an interrupted lightcurver run resumes from DIR when started again
with the same arguments.

Figures go to ``benchmarks/results/incremental_<system>.json``.
"""

import argparse
import contextlib
import json
import os
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import yaml

from benchmarks.compare_lightcurver import (
    DRIVER,
    ensure_lightcurver_venv,
    lightcurver_template,
    print_tail,
    run_measured,
    subprocess_env,
    write_lightcurver_config,
)
from benchmarks.results_io import RESULTS_DIR, report
from lightcurver_ops.psf import SHARED_CACHE_ENV_VAR
from lightcurver_ops.simulate import SimulationSpec, load_truth, simulate_dataset
from tests.dagster.pipeline import TO_LIGHT_CURVES, Pipeline

BASELINES = ("footprints", "reference_stars", "star_reference_fluxes", "roi_cube", "roi_model")
PER_FRAME = (
    "cutouts",
    "psf_model",
    "star_fluxes",
    "zeropoint",
    "normalization_coefficient",
    "roi_fluxes",
)
FOLLOWERS = ("footprints", "light_curves")


def dataset_spec(n_frames: int, size: int, n_late: int) -> SimulationSpec:
    return SimulationSpec(n_frames=n_frames + n_late, nx=size, ny=size, seed=3, exptime=1200.0)


def processed(root: Path, n_frames: int, size: int, n_late: int) -> Pipeline:
    """N frames through every asset; the next ``n_late`` held back."""
    spec = dataset_spec(n_frames, size, n_late)
    pipeline = Pipeline.simulated(root, spec, stars_to_use_psf=6, stars_to_use_norm=30)
    pipeline.hold_back_last_frames(n_late)
    pipeline.ingest_all()
    pipeline.materialize_each(*TO_LIGHT_CURVES)
    return pipeline


def one_more_frame(pipeline: Pipeline) -> dict[str, float]:
    """Seconds of each run the next late frame causes, and its PSF fit's iterations."""
    seconds = {}
    key = pipeline.release_late_frame()
    start = time.perf_counter()
    pipeline.ingest()
    seconds["sensor_run"] = time.perf_counter() - start
    for name in PER_FRAME:
        start = time.perf_counter()
        result = pipeline.materialize_partition(name, key)
        seconds[name] = time.perf_counter() - start
        assert result.success, name
        if name == "psf_model":
            (materialization,) = result.asset_materializations_for_node(name)
            seconds["psf_iterations"] = materialization.metadata["iterations"].value
    for name in FOLLOWERS:
        start = time.perf_counter()
        assert pipeline.materialize(name).success, name
        seconds[name] = time.perf_counter() - start
    return seconds


def dagster_arrivals(root: Path, n: int, size: int, n_late: int) -> tuple[float, list[dict[str, float]]]:
    """Set-up seconds and each late frame's costs in this project."""
    start = time.perf_counter()
    pipeline = processed(root / "sim", n, size, n_late)
    setup = time.perf_counter() - start
    return setup, [one_more_frame(pipeline) for _ in range(n_late)]


def lightcurver_arrivals(root: Path, n: int, size: int, n_late: int) -> tuple[float, list[dict[str, float]]]:
    """Set-up seconds and each late frame's costs in lightcurver: its whole workflow run again.

    A ``root`` that already holds the data set and lightcurver's work directory (an interrupted run
    kept with ``--workdir``) is resumed: lightcurver's set-up workflow skips the work already done, so
    its set-up seconds are then those of the remainder only.
    """
    python = ensure_lightcurver_venv()
    dataset_dir = root / "dataset"
    workdir = root / "lightcurver"
    raw, late = dataset_dir / "raw", dataset_dir / "late"
    resuming = (dataset_dir / "truth.json").exists() and (workdir / "config.yaml").exists()
    spec = dataset_spec(n, size, n_late)
    truth = load_truth(dataset_dir) if resuming else simulate_dataset(dataset_dir, spec)
    dataset = yaml.safe_load((dataset_dir / "config.yaml").read_text())
    catalog = dataset_dir / dataset["gaia_catalog_file"]
    if resuming:
        config = workdir / "config.yaml"
        print(f"resuming the lightcurver run in {root}", flush=True)
    else:
        config = write_lightcurver_config(lightcurver_template(python), dataset, workdir)
        late.mkdir()
        for frame in truth.frames[-n_late:]:
            (raw / frame.file_name).rename(late / frame.file_name)

    def workflow(name: str) -> dict[str, float]:
        timings = workdir / f"timings_{name}.json"
        measured = run_measured(
            [str(python), str(DRIVER), str(config), str(catalog), str(timings)],
            workdir / f"run_{name}.log",
            subprocess_env(),
        )
        if measured.returncode != 0:
            print_tail("lightcurver", measured)
            raise RuntimeError(f"lightcurver failed ({name}); log in {workdir}")
        return {"total": measured.wall_s} | json.loads(timings.read_text())["tasks"]

    setup = workflow("setup")["total"]
    arrivals = []
    for frame in truth.frames[-n_late:]:
        if (late / frame.file_name).exists():  # not yet released by an interrupted run
            (late / frame.file_name).rename(raw / frame.file_name)
        seconds = workflow(Path(frame.file_name).stem)
        arrivals.append({"one_frame_total": seconds.pop("total")} | seconds)
    return setup, arrivals


SYSTEMS: dict[str, Callable[[Path, int, int, int], tuple[float, list[dict[str, float]]]]] = {
    "dagster": dagster_arrivals,
    "lightcurver": lightcurver_arrivals,
}


def medians(arrivals: list[dict[str, float]]) -> dict[str, float | str]:
    """Median of each figure over the late frames, and the values themselves."""
    figures: dict[str, float | str] = {}
    for name in arrivals[0]:
        values = [arrival[name] for arrival in arrivals]
        suffix = "" if name == "psf_iterations" else "_s"
        figures[f"{name}{suffix}"] = statistics.median(values)
        figures[f"{name}{suffix}_each"] = ", ".join(f"{v:.3g}" for v in values)
    return figures


def main() -> None:
    # one JAX compilation cache for every N: the one-frame programs compile once, not per data set
    os.environ.setdefault(SHARED_CACHE_ENV_VAR, str(RESULTS_DIR / ".jax_cache"))
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--system", choices=[*SYSTEMS, "both"], default="both")
    parser.add_argument("--sizes", type=int, nargs="+", default=[12, 48, 192])
    parser.add_argument("--size", type=int, default=384, help="frame side, pixels")
    parser.add_argument("--late", type=int, default=3, help="frames added one after the other")
    parser.add_argument(
        "--workdir",
        type=Path,
        default=None,
        help="one system and one size: work here and keep it; a lightcurver run interrupted there resumes",
    )
    args = parser.parse_args()
    if args.workdir is not None and (args.system == "both" or len(args.sizes) != 1):
        parser.error("--workdir needs one --system and one size in --sizes")
    for system in SYSTEMS if args.system == "both" else [args.system]:
        figures: dict[str, float | int | str] = {"frame_size": args.size, "late_frames": args.late}
        for n in args.sizes:
            kept = args.workdir is not None
            with contextlib.nullcontext(args.workdir) if kept else tempfile.TemporaryDirectory() as root:
                setup, arrivals = SYSTEMS[system](Path(root).resolve(), n, args.size, args.late)
            if system == "dagster":
                for arrival in arrivals:
                    arrival["one_frame_total"] = sum(v for k, v in arrival.items() if k != "psf_iterations")
            figures[f"N{n}_setup_s"] = setup
            figures |= {f"N{n}_{name}": value for name, value in medians(arrivals).items()}
            total = figures[f"N{n}_one_frame_total_s"]
            print(f"{system}, N = {n}: one more frame {total:.1f} s (median)", flush=True)
        report(f"incremental_{system}", figures)


if __name__ == "__main__":
    main()
