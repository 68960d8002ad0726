"""Per-frame cost of star photometry, the normalisation baseline, coefficients and zero points.

Simulates frames (512 x 512 by default), runs the per-frame chain up to ``psf_model`` in Dagster on
a temporary instance, then times each photometry asset materialised over all frames in one run
(seconds per frame, Dagster included), and the bare batched flux fit
(:func:`lightcurver_ops.photometry.measure_fluxes`, first call with compilation and a second call).

    .venv/bin/python -m benchmarks.photometry [--frames 16] [--size 512]
"""

import argparse
import resource
import tempfile
import time
from pathlib import Path

import numpy as np

from benchmarks.results_io import report
from lightcurver_ops import paths
from lightcurver_ops.cutouts import read_frame_cutouts
from lightcurver_ops.frame_cutouts import ROI_STAMP
from lightcurver_ops.frame_psf import read_psf
from lightcurver_ops.photometry import measure_fluxes, prepare_photometry_stars
from lightcurver_ops.simulate import SimulationSpec
from tests.dagster.pipeline import Pipeline


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=16)
    parser.add_argument("--size", type=int, default=512)
    args = parser.parse_args()
    figures: dict[str, float | int | str] = {"frames": args.frames, "frame_size": args.size}
    with tempfile.TemporaryDirectory() as tmp:
        spec = SimulationSpec(n_frames=args.frames, nx=args.size, ny=args.size, seed=5)
        pipeline = Pipeline.simulated(Path(tmp) / "sim", spec, stars_to_use_psf=6, stars_to_use_norm=30)
        pipeline.ingest()
        pipeline.materialize_each("footprints", "reference_stars", "cutouts", "psf_model")
        for name in ("star_fluxes", "star_reference_fluxes", "normalization_coefficient", "zeropoint"):
            start = time.perf_counter()
            assert pipeline.materialize(name).success, name
            seconds = time.perf_counter() - start
            figures[f"{name}_s_total"] = seconds
            figures[f"{name}_s_per_frame"] = seconds / args.frames

        workdir = pipeline.config.workdir
        prepared = []
        for key in pipeline.rows():
            stamps, _, _ = read_frame_cutouts(workdir / paths.cutouts_relpath(key))
            stamps.pop(ROI_STAMP, None)
            psf = read_psf(workdir / paths.psf_relpath(key))
            prepared.append(prepare_photometry_stars(stamps, psf.full_psf, psf.subsampling))
        n_stars = sum(len(p.star_ids) for p in prepared)
        for label in ("first_call", "second_call"):
            start = time.perf_counter()
            results = measure_fluxes(prepared)
            figures[f"measure_fluxes_{label}_s_per_frame"] = (time.perf_counter() - start) / len(prepared)
        figures["stars_per_frame"] = n_stars / len(prepared)
        figures["star_fit_reduced_chi2_median"] = float(
            np.median([s.reduced_chi2 for f in results for s in f])
        )
    figures["peak_rss_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    report("photometry", figures)


if __name__ == "__main__":
    main()
