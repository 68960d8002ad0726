"""``psf_model``: each frame's STARRED PSF, fitted to its reference stars, all frames of a run at once."""

import dagster as dg

from lightcurver_dagster.defs.automation import follows_own_frame
from lightcurver_dagster.defs.decorators import per_frame_asset
from lightcurver_dagster.defs.inputs import current_stars, imported_frame
from lightcurver_dagster.defs.per_frame.batch import FrameOutcome, materialize_frames
from lightcurver_dagster.defs.per_frame.cutouts import cutouts
from lightcurver_dagster.defs.resources import LightcurverConfigResource, ScienceDatabase, WorkDirectory
from lightcurver_ops import paths
from lightcurver_ops.chi2_bounds import chi2_bounds
from lightcurver_ops.cutouts import read_frame_cutouts
from lightcurver_ops.db.psfs import psf_chi2_values, replace_psf
from lightcurver_ops.frame_cutouts import ROI_STAMP
from lightcurver_ops.frame_psf import plot_psf_fit, psf_row, psf_stars_of_frame, write_psf
from lightcurver_ops.psf import enable_compilation_cache, fit_psfs
from lightcurver_ops.stages import PSF, eliminated_before
from lightcurver_ops.star_choice import requested_count

PSF_CHECK = "psf_fit_quality"
PSF_BATCH_SIZE = 8
"""Frames fitted together by one vectorised call: larger batches were slower per frame on CPU
(the loop runs until the slowest frame converges; benchmarks/psf_batch.py)."""


@per_frame_asset(
    deps=[cutouts],
    automation_condition=follows_own_frame(),
    accelerator=True,
    kinds={"jax", "hdf5"},
    code_version="4",
    check_specs=[dg.AssetCheckSpec(PSF_CHECK, asset="psf_model")],
)
def psf_model(
    context: dg.AssetExecutionContext,
    lightcurver_config: LightcurverConfigResource,
    science_database: ScienceDatabase,
    work_directory: WorkDirectory,
):
    """STARRED PSF of each frame (elliptical Moffat plus a sub-sampled, starlet-regularised pixel
    grid) fitted to the stamps of its PSF stars (``stars_to_use_psf`` / ``stars_to_exclude_psf``;
    neighbours masked, stars masked over 40 % dropped), with STARRED's field distortion (dilation and
    shear across the frame) when ``field_distortion``. All frames of a run are fitted together by
    one compiled, vectorised JAX program (cached in the work directory across runs). Stores
    ``psfs/<frame>.h5``, a ``PSFs`` row (reduced chi2, Moffat FWHM in arcsec, convergence) and a plot;
    the check flags frames whose chi2 is outside ``psf_fit_exclude_strategy`` or whose fit did not
    converge, for the later stages to leave out."""
    config = lightcurver_config.load()
    engine = science_database.engine
    enable_compilation_cache(work_directory.path(paths.JAX_CACHE_DIR))
    set_hash, stars = current_stars(engine, config)

    outcomes: dict[str, FrameOutcome] = {}
    batch = {}
    for key in context.partition_keys:
        with engine.connect() as connection:
            frame = imported_frame(connection, key)
        reason = eliminated_before(frame, PSF)
        if reason is None:
            stamps, _, frame_shape = read_frame_cutouts(work_directory.path(paths.cutouts_relpath(key)))
            stamps.pop(ROI_STAMP, None)
            try:
                batch[key] = (frame, *psf_stars_of_frame(config, stars, stamps, frame_shape))
            except ValueError as exc:
                reason = f"no PSF: {exc}"
        if reason is not None:
            outcomes[key] = FrameOutcome(key, True, reason)
            with engine.begin() as connection:
                replace_psf(connection, frame["id"], set_hash, None)

    keys = list(batch)
    # Every frame padded to the configured number of PSF stars: one compiled program serves every
    # batch of a run and, through the persistent cache, later runs.
    counts = [len(prepared.star_ids) for _, prepared, _ in batch.values()]
    max_psf_stars = max([requested_count(config.stars_to_use_psf), *counts])
    fits = {}
    for start in range(0, len(keys), PSF_BATCH_SIZE):
        chunk = keys[start : start + PSF_BATCH_SIZE]
        fitted = fit_psfs(
            [batch[key][1] for key in chunk],
            subsampling=config.subsampling_factor,
            n_iter_analytic=config.psf_n_iter_analytic,
            n_iter_pixels=config.psf_n_iter_pixels,
            fwhm_guess_pixels=[batch[key][0]["seeing_pixels"] for key in chunk],
            max_stars=max_psf_stars,
            field_distortion=config.field_distortion,
        )
        fits |= dict(zip(chunk, fitted, strict=True))
        context.log.info(f"fitted the PSFs of {len(chunk)} frames together ({len(fits)}/{len(keys)})")

    def store(key: str) -> FrameOutcome:
        if key in outcomes:
            return outcomes[key]
        (frame, prepared, names), fit = batch[key], fits[key]
        write_psf(work_directory.path(paths.psf_relpath(key)), fit, names, config.subsampling_factor)
        plot = plot_psf_fit(prepared, fit, names, work_directory.path(paths.psf_plot_relpath(key)), key)
        with engine.begin() as connection:
            replace_psf(
                connection,
                frame["id"],
                set_hash,
                psf_row(fit, names, config.subsampling_factor, frame["pixel_scale"]),
            )
        return FrameOutcome(
            key,
            False,
            metadata={
                "reduced_chi2": fit.reduced_chi2,
                "moffat_fwhm_pixels": fit.moffat_fwhm_pixels,
                "n_stars": len(names),
                "converged": fit.converged,
                "iterations": sum(fit.n_iterations),
                "plot": dg.MetadataValue.path(str(plot)),
            },
        )

    result = materialize_frames(context, store)
    with engine.connect() as connection:
        low, high = chi2_bounds(
            config.psf_fit_exclude_strategy, psf_chi2_values(connection, set_hash).values()
        )
    flagged = [
        f"{key} (chi2 {fit.reduced_chi2:.3f}{'' if fit.converged else ', not converged'})"
        for key, fit in sorted(fits.items())
        if not (low <= fit.reduced_chi2 <= high) or not fit.converged
    ]
    yield result
    yield dg.AssetCheckResult(
        check_name=PSF_CHECK,
        passed=not flagged,
        severity=dg.AssetCheckSeverity.WARN,
        metadata={
            "chi2_bounds": f"[{low:.3g}, {high:.3g}]",
            "flagged_frames": ", ".join(flagged) or "none",
            "n_flagged": len(flagged),
        },
    )
