"""Seconds per frame of the batched STARRED PSF fit against STARRED's own ``build_psf``.

Simulated 512 x 512 frames; the brightest unsaturated catalogue stars (up to 10, stamps of 24 px) are
cut at their true positions from the calibrated frames. ``build_psf`` runs frame by frame with
lightcurver's settings (ss = 2, 100 + 3000 iterations) on a few frames; :func:`fit_psfs` runs on
batches of 1, 8 and 32 frames (first call: compile + run; second call: run). Reported for each:
seconds per frame, median reduced chi2 (lightcurver's definition, sum / number of good pixels, for
both), median |effective FWHM / truth - 1|, and the process's peak memory.

    .venv/bin/python -m benchmarks.psf_batch [--frames 32]
"""

import argparse
import resource
import tempfile
import time
from pathlib import Path

import numpy as np
from astropy.wcs import WCS

from benchmarks.results_io import report
from lightcurver_ops import cutouts, frames
from lightcurver_ops.psf import PsfFit, PsfStars, fit_psfs, prepare_psf_stars
from lightcurver_ops.simulate import FrameTruth, SimulationSpec, simulate_dataset

_MIN_FLUX = 300.0  # e-/s: stars with a peak signal-to-noise above ~30


def simulated_psf_frames(
    out_dir: Path, spec: SimulationSpec, stamp_size: int, n_stars: int
) -> list[tuple[FrameTruth, PsfStars]]:
    """Simulate frames and prepare the PSF stars of each (brightest unsaturated stars, true positions)."""
    truth = simulate_dataset(out_dir, spec)
    result = []
    for frame in truth.frames:
        raw = frames.read_raw_frame(out_dir / "raw" / frame.file_name)
        cal = frames.calibrate_frame(
            raw, spec.gain, spec.exptime, n_boxes=6, mask_sources=False, threshold=2.0, min_area=20
        )
        columns, rows = cutouts.bad_lines(cal.image, cal.sky_rms)
        wcs = WCS(cal.header)
        saturation = spec.saturation_adu * spec.gain / spec.exptime - cal.sky_level - 5.0 * cal.sky_rms
        margin = stamp_size
        candidates = sorted(
            (
                s
                for s in truth.sources
                if s.kind == "star"
                and s.flux_e_per_s > _MIN_FLUX
                and margin <= s.x_pixels[frame.index] <= spec.nx - 1 - margin
                and margin <= s.y_pixels[frame.index] <= spec.ny - 1 - margin
            ),
            key=lambda s: -s.flux_e_per_s,
        )
        stamps = {
            str(s.source_id): cutouts.extract_stamp(
                cal.image,
                wcs,
                s.x_pixels[frame.index],
                s.y_pixels[frame.index],
                stamp_size,
                sky_rms=cal.sky_rms,
                exptime=spec.exptime,
                saturation=saturation,
                bad_columns=columns,
                bad_rows=rows,
                cosmics={"sigclip": 4.5, "sigfrac": 0.3, "objlim": 5.0},
            )
            for s in candidates[:n_stars]
        }
        result.append((frame, prepare_psf_stars(stamps)))
    return result


def _lightcurver_chi2(fit: PsfFit) -> float:
    return float(np.nansum(fit.residuals**2) / np.count_nonzero(np.isfinite(fit.residuals)))


def _fwhm_error(fit: PsfFit, truth: FrameTruth) -> float:
    return abs(fit.effective_fwhm_pixels / truth.seeing_fwhm_pixels - 1.0)


def _build_psf(stars: PsfStars, guess: float) -> tuple[float, float]:
    """STARRED's build_psf as lightcurver calls it; (seconds, lightcurver chi2)."""
    from starred.procedures.psf_routines import build_psf

    start = time.perf_counter()
    result = build_psf(
        stars.data.copy(),
        stars.noise.copy(),
        2,
        masks=~stars.mask,
        n_iter_analytic=100,
        n_iter_adabelief=3000,
        guess_method_star_position="center",
        guess_fwhm_pixels=guess,
    )
    return time.perf_counter() - start, float(result["chi2"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=32)
    parser.add_argument("--starred-frames", type=int, default=2)
    args = parser.parse_args()
    figures: dict[str, float | int | str] = {}
    with tempfile.TemporaryDirectory() as tmp:
        spec = SimulationSpec(nx=512, ny=512, n_frames=args.frames, seed=3)
        data = simulated_psf_frames(Path(tmp), spec, 24, 10)
    truths = [t for t, _ in data]
    stars = [s for _, s in data]
    guesses = [t.seeing_fwhm_pixels for t in truths]
    figures["stars_per_frame_median"] = float(np.median([len(s.star_ids) for s in stars]))
    for batch in (1, 8, 32):
        batch = min(batch, len(stars))
        kwargs = dict(subsampling=2, n_iter_analytic=100, n_iter_pixels=1000, max_stars=10)
        start = time.perf_counter()
        fit_psfs(stars[:batch], fwhm_guess_pixels=guesses[:batch], **kwargs)
        first = time.perf_counter() - start
        start = time.perf_counter()
        fits = fit_psfs(stars[:batch], fwhm_guess_pixels=guesses[:batch], **kwargs)
        run = time.perf_counter() - start
        figures[f"batch{batch}_first_call_s"] = first
        figures[f"batch{batch}_s_per_frame"] = run / batch
        figures[f"batch{batch}_chi2_median"] = float(np.median([_lightcurver_chi2(f) for f in fits]))
        figures[f"batch{batch}_reduced_chi2_median"] = float(np.median([f.reduced_chi2 for f in fits]))
        figures[f"batch{batch}_fwhm_error_median"] = float(
            np.median([_fwhm_error(f, t) for f, t in zip(fits, truths[:batch], strict=True)])
        )
        figures[f"batch{batch}_pixel_iterations_median"] = float(np.median([f.n_iterations[1] for f in fits]))
    seconds, chi2 = [], []
    for frame_stars, guess in zip(stars[: args.starred_frames], guesses[: args.starred_frames], strict=True):
        s, c = _build_psf(frame_stars, guess)
        seconds.append(s)
        chi2.append(c)
    figures["build_psf_s_per_frame_first"] = seconds[0]
    figures["build_psf_s_per_frame_later"] = float(np.median(seconds[1:])) if len(seconds) > 1 else seconds[0]
    figures["build_psf_chi2_median"] = float(np.median(chi2))
    figures["peak_rss_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    report("psf_batch", figures)


if __name__ == "__main__":
    main()
