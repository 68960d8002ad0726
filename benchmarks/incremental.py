"""Cost of adding one frame to an already processed data set of N frames, for N = 12, 48, 192.

For each N: simulate N + 1 small frames, process the first N through every asset in Dagster (a
temporary instance, in-process runs, as ``lightcurver-dagster run`` does), then drop the last frame
and time what its arrival costs: the raw-frames sensor's run (``calibrated_frame``,
``plate_solution``), the frame's own partition of every later per-frame asset, and the all-frames
assets that follow the frames (``footprints``, ``light_curves``). The baselines (reference stars,
normalisation reference fluxes, ROI model) are not rebuilt: that is the nightly cron's job. The goal
is a cost flat in N. One JAX compilation cache serves every N (the first N pays the one-frame
programs' compilation unless the cache already holds them).

    .venv/bin/python -m benchmarks.incremental [--sizes 12 48 192] [--size 384]
"""

import argparse
import os
import tempfile
import time
from pathlib import Path

from benchmarks.results_io import RESULTS_DIR, report
from lightcurver_dagster.defs.partitions import frames_partitions
from lightcurver_ops.psf import SHARED_CACHE_ENV_VAR
from lightcurver_ops.simulate import SimulationSpec
from tests.dagster.pipeline import Pipeline

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


def processed(root: Path, n_frames: int, size: int) -> Pipeline:
    """N frames through every asset; the (N + 1)-th held back."""
    spec = SimulationSpec(n_frames=n_frames + 1, nx=size, ny=size, seed=3, exptime=1200.0)
    pipeline = Pipeline.simulated(root, spec, stars_to_use_psf=6, stars_to_use_norm=30)
    pipeline.hold_back_last_frame()
    while len(pipeline.instance.get_dynamic_partitions(frames_partitions.name)) < n_frames:
        pipeline.ingest()  # as the sensor: at most ingest_max_frames_per_run frames a tick
    pipeline.materialize_each("footprints", "reference_stars", "cutouts", "psf_model", "star_fluxes")
    pipeline.materialize_each("zeropoint", "star_reference_fluxes", "normalization_coefficient")
    pipeline.materialize_each("roi_cube", "roi_model", "roi_fluxes", "light_curves")
    return pipeline


def one_more_frame(pipeline: Pipeline) -> dict[str, float]:
    """Seconds of each run the late frame causes."""
    seconds = {}
    key = pipeline.release_late_frame()
    start = time.perf_counter()
    pipeline.ingest()
    seconds["sensor_run"] = time.perf_counter() - start
    for name in PER_FRAME:
        start = time.perf_counter()
        assert pipeline.materialize_partition(name, key).success, name
        seconds[name] = time.perf_counter() - start
    for name in FOLLOWERS:
        start = time.perf_counter()
        assert pipeline.materialize(name).success, name
        seconds[name] = time.perf_counter() - start
    return seconds


def main() -> None:
    # one JAX compilation cache for every N: the one-frame programs compile once, not per data set
    os.environ.setdefault(SHARED_CACHE_ENV_VAR, str(RESULTS_DIR / ".jax_cache"))
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[12, 48, 192])
    parser.add_argument("--size", type=int, default=384, help="frame side, pixels")
    args = parser.parse_args()
    figures: dict[str, float | int | str] = {"frame_size": args.size}
    for n in args.sizes:
        with tempfile.TemporaryDirectory() as tmp:
            start = time.perf_counter()
            pipeline = processed(Path(tmp) / "sim", n, args.size)
            figures[f"N{n}_setup_s"] = time.perf_counter() - start
            seconds = one_more_frame(pipeline)
        for name, value in seconds.items():
            figures[f"N{n}_{name}_s"] = value
        figures[f"N{n}_one_frame_total_s"] = sum(seconds.values())
        print(f"N = {n}: one more frame {sum(seconds.values()):.1f} s", flush=True)
    report("incremental", figures)


if __name__ == "__main__":
    main()
