"""``star_fluxes``: the normalisation stars' fluxes in each frame, with the frame's own PSF."""

import dagster as dg

from lightcurver_dagster.defs.automation import follows_own_frame
from lightcurver_dagster.defs.decorators import per_frame_asset
from lightcurver_dagster.defs.inputs import current_stars, imported_frame
from lightcurver_dagster.defs.per_frame.batch import FrameOutcome, materialize_frames
from lightcurver_dagster.defs.per_frame.psf_model import psf_model
from lightcurver_dagster.defs.resources import LightcurverConfigResource, ScienceDatabase, WorkDirectory
from lightcurver_ops import paths
from lightcurver_ops.chi2_bounds import chi2_bounds
from lightcurver_ops.cutouts import read_frame_cutouts
from lightcurver_ops.db.normalization import replace_star_fluxes
from lightcurver_ops.db.psfs import psf_chi2_values
from lightcurver_ops.frame_photometry import flux_rows, normalization_stars, psf_rejection
from lightcurver_ops.frame_psf import read_psf
from lightcurver_ops.photometry import measure_fluxes, prepare_photometry_stars
from lightcurver_ops.psf import enable_compilation_cache
from lightcurver_ops.stages import STAR_FLUXES, eliminated_before


@per_frame_asset(
    deps=[psf_model],
    automation_condition=follows_own_frame(),
    accelerator=True,
    kinds={"jax", "sql"},
    code_version="1",
)
def star_fluxes(
    context: dg.AssetExecutionContext,
    lightcurver_config: LightcurverConfigResource,
    science_database: ScienceDatabase,
    work_directory: WorkDirectory,
) -> dg.MaterializeResult:
    """Flux (e-/s), Fisher uncertainty and reduced chi2 of each normalisation star
    (``stars_to_use_norm`` / ``stars_to_exclude_norm``) in the frame: the frame's PSF model (at the
    star's position when it has a field distortion) with a
    free sub-pixel position per star (and a uniform background with
    ``star_photometry_uniform_background_per_epoch``), masked pixels given no weight, neighbours
    masked. Every star of every frame of a run is fitted by one compiled, vectorised program. Frames
    whose PSF is missing, outside ``psf_fit_exclude_strategy`` or not converged are skipped with the
    reason; a re-run replaces the frame's rows (``star_flux_in_frame``)."""
    config = lightcurver_config.load()
    engine = science_database.engine
    enable_compilation_cache(work_directory.path(paths.JAX_CACHE_DIR))
    set_hash, stars = current_stars(engine, config)
    wanted = {star["gaia_id"] for star in normalization_stars(config, stars)}
    with engine.connect() as connection:
        psf_chi2 = psf_chi2_values(connection, set_hash)
    bounds = chi2_bounds(config.psf_fit_exclude_strategy, psf_chi2.values())
    fit_background = (
        config.star_photometry_uniform_background_per_epoch
        or config.star_photometry_starlet_global_background
    )
    if config.star_photometry_starlet_global_background:
        context.log.warning(
            "star_photometry_starlet_global_background: a star's background is fitted per frame (uniform), "
            "not as a regularised grid shared by all frames, so that each frame stays independent"
        )

    frames, prepared, outcomes = {}, {}, {}
    for key in context.partition_keys:
        with engine.connect() as connection:
            frames[key] = frame = imported_frame(connection, key)
        reason = eliminated_before(frame, STAR_FLUXES)
        if reason is None and frame["id"] not in psf_chi2:
            reason = psf_rejection(None, False, bounds)
        if reason is None:
            psf = read_psf(work_directory.path(paths.psf_relpath(key)))
            reason = psf_rejection(psf_chi2[frame["id"]], psf.converged, bounds)
        if reason is None:
            stamps, _, frame_shape = read_frame_cutouts(
                work_directory.path(paths.cutouts_relpath(key)), names=wanted
            )
            psfs = {star: psf.at(stamp.position, frame_shape)[1] for star, stamp in stamps.items()}
            try:
                prepared[key] = prepare_photometry_stars(stamps, psfs, psf.subsampling)
            except ValueError as exc:
                reason = f"no star measured: {exc}"
        if reason is not None:
            outcomes[key] = FrameOutcome(key, True, reason)

    keys = list(prepared)
    measured = dict(zip(keys, measure_fluxes([prepared[k] for k in keys], fit_background), strict=True))
    context.log.info(f"measured {sum(len(m) for m in measured.values())} star fluxes in {len(keys)} frames")

    def store(key: str) -> FrameOutcome:
        rows = flux_rows(measured.get(key, []))
        with engine.begin() as connection:
            replace_star_fluxes(connection, frames[key]["id"], set_hash, rows)
        if key in outcomes:
            return outcomes[key]
        chi2 = sorted(row["chi2"] for row in rows)
        return FrameOutcome(
            key,
            False,
            metadata={
                "n_stars": len(rows),
                "median_reduced_chi2": chi2[len(chi2) // 2],
                "skipped_stars": "; ".join(f"{k}: {v}" for k, v in prepared[key].skipped.items()) or None,
            },
        )

    return materialize_frames(context, store)
