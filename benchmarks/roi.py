"""Cost of the ROI stages: the joint ROI model for 12 and 48 frames, and one frame's roi_fluxes.

Simulates 48 frames (512 x 512 by default), runs the chain up to the normalisation in Dagster on a
temporary instance, builds the ROI cube, then times :func:`lightcurver_ops.roi_model.fit_roi_model`
on the first 12 frames and on all 48 (the config's iteration limits), and
:func:`lightcurver_ops.roi_photometry.fit_roi_frame` on one frame (first call with compilation, then
the median of the others). Also the accuracy of the light curves against the injected ones (RMS
after one scale per image, in mmag).

    .venv/bin/python -m benchmarks.roi [--frames 48] [--size 512]
"""

import argparse
import resource
import tempfile
import time
from pathlib import Path

import numpy as np

from benchmarks.results_io import report
from lightcurver_dagster.defs.roi_inputs import RoiSelection
from lightcurver_ops.db.frames import frame_rows
from lightcurver_ops.db.stars import latest_star_set
from lightcurver_ops.frame_roi import build_cube, source_pixels
from lightcurver_ops.roi_cube import RoiCube
from lightcurver_ops.roi_model import fit_roi_model
from lightcurver_ops.roi_photometry import fit_roi_frame
from lightcurver_ops.simulate import SimulationSpec
from tests.dagster.pipeline import TO_NORMALISATION, Pipeline


def subset(cube: RoiCube, n: int) -> RoiCube:
    fields = {name: getattr(cube, name) for name in cube.__dataclass_fields__}
    return RoiCube(**{k: (v[:n] if k not in ("subsampling",) else v) for k, v in fields.items()})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=48)
    parser.add_argument("--size", type=int, default=512)
    args = parser.parse_args()
    figures: dict[str, float | int | str] = {"frames": args.frames, "frame_size": args.size}
    with tempfile.TemporaryDirectory() as tmp:
        spec = SimulationSpec(n_frames=args.frames, nx=args.size, ny=args.size, seed=8, exptime=1200.0)
        pipeline = Pipeline.simulated(Path(tmp) / "sim", spec, stars_to_use_psf=6, stars_to_use_norm=30)
        truth = pipeline.truth
        pipeline.ingest()
        pipeline.materialize_each(*TO_NORMALISATION, "zeropoint")
        config = pipeline.config
        with pipeline.engine.connect() as connection:
            set_hash = latest_star_set(connection)
            rows = frame_rows(connection)
        selection = RoiSelection.load(pipeline.engine, config, set_hash)
        chosen = [row for row in rows if selection.rejection(row) is None]
        cube = build_cube([selection.read(config.workdir, row) for row in chosen])
        sources = source_pixels(config.point_sources, cube.wcs_headers[0])
        kwargs = dict(
            translations_iters=config.roi_deconv_translations_iters,
            all_iters=config.roi_deconv_all_iters,
            regularization=config.roi_model_regularization.model_dump(),
            fix_astrometry=config.fix_point_source_astrometry,
            fit_translations=not config.roi_translations_from_wcs,
        )
        for n in (12, len(cube.frame_ids)):
            start = time.perf_counter()
            model = fit_roi_model(subset(cube, n), sources, **kwargs)
            figures[f"roi_model_{n}_frames_s"] = time.perf_counter() - start
            figures[f"roi_model_{n}_frames_iterations"] = " + ".join(str(i) for i in model.iterations)
        offsets = model.point_source_offsets()
        seconds, fits = [], []
        for epoch in range(len(cube.frame_ids)):
            start = time.perf_counter()
            fits.append(
                fit_roi_frame(
                    cube.data[epoch],
                    cube.noise[epoch],
                    cube.mask[epoch],
                    cube.psf[epoch],
                    model.background,
                    offsets,
                    model.rotations[epoch],
                    model.translations[epoch],
                    fit_translation=not config.roi_translations_from_wcs,
                )
            )
            seconds.append(time.perf_counter() - start)
        figures["roi_fluxes_first_call_s"] = seconds[0]
        figures["roi_fluxes_s_per_frame"] = float(np.median(seconds[1:]))
        index = {key: i for i, key in enumerate(f.file_name.removesuffix(".fits") for f in truth.frames)}
        epochs = [index[key] for key in cube.partition_keys]
        for k, label in enumerate(model.labels):
            image = next(q for q in truth.quasar_images if q.label == label)
            measured = np.array([fit.fluxes[k] for fit in fits])
            injected = np.array([image.flux_e_per_s_per_frame[i] for i in epochs])
            ratio = measured / injected
            figures[f"{label}_rms_mmag"] = float(1085.7 * np.std(ratio / np.median(ratio)))
            figures[f"{label}_median_error_mmag"] = float(
                1085.7 * np.median([fit.flux_uncertainties[k] / fit.fluxes[k] for fit in fits])
            )
    figures["peak_rss_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    report("roi", figures)


if __name__ == "__main__":
    main()
