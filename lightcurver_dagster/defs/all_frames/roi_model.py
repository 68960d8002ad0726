"""``roi_model``: the joint STARRED model of the ROI (the baseline of the light curves)."""

import json

import dagster as dg
import numpy as np
from astropy.io import fits
from astropy.time import Time

from lightcurver_dagster.defs.all_frames.roi_cube import roi_cube
from lightcurver_dagster.defs.automation import rebuilt_daily
from lightcurver_dagster.defs.decorators import BASELINE_TAG, all_frames_asset
from lightcurver_dagster.defs.inputs import current_stars
from lightcurver_dagster.defs.resources import LightcurverConfigResource, ScienceDatabase, WorkDirectory
from lightcurver_dagster.defs.roi_inputs import roi_cube_path
from lightcurver_ops import paths
from lightcurver_ops.config import LightcurverConfig
from lightcurver_ops.db.roi import store_roi_model
from lightcurver_ops.frame_roi import (
    plot_roi_model,
    sky_positions,
    source_pixels,
    write_model_fits,
    write_roi_model,
)
from lightcurver_ops.light_curves import write_astrometry
from lightcurver_ops.psf import enable_compilation_cache
from lightcurver_ops.roi_cube import read_roi_cube
from lightcurver_ops.roi_model import fit_roi_model


def starting_background(config: LightcurverConfig) -> np.ndarray | None:
    """The config's ``starting_background`` (FITS or .npy, relative to workdir), or None."""
    if config.starting_background is None:
        return None
    path = config.resolve(config.starting_background)
    if not path.is_file():
        raise dg.Failure(f"starting_background: {path} does not exist")
    try:
        return np.load(path) if path.suffix == ".npy" else fits.getdata(path).astype(float)
    except (OSError, ValueError) as exc:
        raise dg.Failure(f"starting_background: cannot read {path}: {exc}") from exc


@all_frames_asset(
    deps=[roi_cube],
    automation_condition=rebuilt_daily(),
    accelerator=True,
    tags={BASELINE_TAG: ""},
    kinds={"jax", "fits"},
    code_version="1",
)
def roi_model(
    context: dg.AssetExecutionContext,
    lightcurver_config: LightcurverConfigResource,
    science_database: ScienceDatabase,
    work_directory: WorkDirectory,
) -> dg.MaterializeResult:
    """STARRED joint model of the ROI cube: a high-resolution background (lens galaxy) and the
    config's ``point_sources`` with shared positions (``fix_point_source_astrometry``: fixed, free,
    or a Gaussian prior of that many pixels) and per-frame fluxes; translations first, then
    everything (``roi_deconv_*_iters``, ``roi_model_regularization``, optional
    ``starting_background`` and ``further_optimize_background``). Writes the model (read by
    ``roi_fluxes``), ``roi_model/<hash>_<roi>_{background,high_res_model}.fits``, the point-source
    astrometry JSON and a model/residual plot. Built when missing, on the baseline cron and on
    demand; a new model re-runs every frame's ``roi_fluxes``."""
    config = lightcurver_config.load()
    if not config.do_ROI_model:
        return dg.MaterializeResult(metadata={"skipped": "do_ROI_model is false"})
    engine = science_database.engine
    enable_compilation_cache(work_directory.path(paths.JAX_CACHE_DIR))
    set_hash, _ = current_stars(engine, config)
    cube = read_roi_cube(roi_cube_path(config, work_directory, set_hash))
    sources = source_pixels(config.point_sources, cube.wcs_headers[0])
    try:
        model = fit_roi_model(
            cube,
            sources,
            translations_iters=config.roi_deconv_translations_iters,
            all_iters=config.roi_deconv_all_iters,
            regularization=config.roi_model_regularization.model_dump(),
            fix_astrometry=config.fix_point_source_astrometry,
            starting_background=starting_background(config),
            further_optimize_background=config.further_optimize_background,
            fit_translations=not config.roi_translations_from_wcs,
        )
    except ValueError as exc:
        raise dg.Failure(f"roi_model: {exc}") from exc
    relpath = paths.roi_model_relpath(set_hash, config.roi_name)
    write_roi_model(work_directory.path(relpath), model, cube)
    prefix = work_directory.path(paths.roi_model_prefix(set_hash, config.roi_name))
    global_zp, _ = cube.global_zeropoint()
    fits_files = write_model_fits(prefix, model, cube.wcs_headers[0], global_zp)
    positions = sky_positions(model, cube.wcs_headers[0])
    write_astrometry(prefix.with_name(prefix.name + "_astrometry.json"), positions)
    plot = plot_roi_model(cube, model, prefix.with_name(prefix.name + "_model.png"), config.roi_name)
    with engine.begin() as connection:
        store_roi_model(
            connection,
            set_hash,
            config.roi_name,
            {
                "created_mjd": Time.now().mjd,
                "n_frames": len(cube.frame_ids),
                "reference_frame_id": int(cube.frame_ids[0]),
                "model_relpath": relpath,
                "median_reduced_chi2": float(np.median(model.reduced_chi2)),
                "astrometry": json.dumps(positions),
            },
        )
    context.log.info(f"ROI model of {len(cube.frame_ids)} frames, iterations {model.iterations}")
    return dg.MaterializeResult(
        metadata={
            "n_frames": len(cube.frame_ids),
            "median_reduced_chi2": float(np.median(model.reduced_chi2)),
            "iterations": " + ".join(str(n) for n in model.iterations),
            "astrometry": dg.MetadataValue.json(positions),
            "high_res_model": dg.MetadataValue.path(str(fits_files[1])),
            "plot": dg.MetadataValue.path(str(plot)),
        }
    )
