"""``roi_fluxes``: each frame's point-source fluxes with the ROI model fixed (the increment)."""

import json
import math

import dagster as dg

from lightcurver_dagster.defs.all_frames.roi_model import roi_model
from lightcurver_dagster.defs.automation import follows_own_frame
from lightcurver_dagster.defs.decorators import per_frame_asset
from lightcurver_dagster.defs.inputs import current_stars, imported_frame
from lightcurver_dagster.defs.per_frame.batch import FrameOutcome, materialize_frames
from lightcurver_dagster.defs.per_frame.normalization_coefficient import normalization_coefficient
from lightcurver_dagster.defs.resources import LightcurverConfigResource, ScienceDatabase, WorkDirectory
from lightcurver_dagster.defs.roi_inputs import RoiSelection
from lightcurver_ops import paths
from lightcurver_ops.db.roi import replace_roi_fit, roi_model_row
from lightcurver_ops.errors import ConfigError
from lightcurver_ops.frame_roi import centred_psf, read_roi_model
from lightcurver_ops.psf import enable_compilation_cache
from lightcurver_ops.roi_cube import cd_matrix
from lightcurver_ops.roi_photometry import fit_roi_frame


@per_frame_asset(
    deps=[normalization_coefficient, roi_model],
    automation_condition=follows_own_frame(),
    accelerator=True,
    kinds={"jax", "sql"},
    code_version="1",
)
def roi_fluxes(
    context: dg.AssetExecutionContext,
    lightcurver_config: LightcurverConfigResource,
    science_database: ScienceDatabase,
    work_directory: WorkDirectory,
) -> dg.MaterializeResult:
    """Fluxes (normalised e-/s) of each point source in the frame: the ROI model's background and
    positions fixed, the frame's sky free, its translation from its plate solution
    (``roi_translations_from_wcs``, default) or free, its PSF and rotation; uncertainties from
    the full Fisher matrix (blended images keep their covariance, stored with the fit) combined
    with the coefficient's error. A new frame costs this one small fit; a new ROI model re-runs
    every frame. Frames outside the ROI selection are skipped with the reason."""
    config = lightcurver_config.load()
    engine = science_database.engine
    enable_compilation_cache(work_directory.path(paths.JAX_CACHE_DIR))
    set_hash, _ = current_stars(engine, config)
    roi = config.roi_name
    try:
        selection = RoiSelection.load(engine, config, set_hash)
    except ConfigError as exc:
        raise dg.Failure(str(exc)) from exc
    with engine.connect() as connection:
        model_row = roi_model_row(connection, set_hash, roi)
    model = read_roi_model(work_directory.path(model_row["model_relpath"])) if model_row else None

    def measure(key: str) -> FrameOutcome:
        with engine.connect() as connection:
            frame = imported_frame(connection, key)
        reason = "no ROI model (do_ROI_model false, or roi_model not materialised)" if model is None else None
        reason = reason or selection.rejection(frame)
        if reason is not None:
            with engine.begin() as connection:
                replace_roi_fit(connection, frame["id"], set_hash, roi, None, [])
            return FrameOutcome(key, True, reason)
        inputs = selection.read(work_directory.root, frame)
        data, noise, mask = inputs.normalised()
        rotation, translation = model.start(cd_matrix(inputs.stamp.wcs_header), inputs.position)
        fit = fit_roi_frame(
            data,
            noise,
            mask,
            centred_psf(inputs.narrow_psf),
            model.background,
            model.offsets,
            rotation,
            translation,
            fit_translation=not config.roi_translations_from_wcs,
        )
        relative = inputs.coefficient_uncertainty / inputs.coefficient
        rows = [
            {
                "source": label,
                "flux": float(flux),
                "flux_uncertainty": math.hypot(error, relative * flux),
                "fit_flux_uncertainty": float(error),
            }
            for label, flux, error in zip(model.labels, fit.fluxes, fit.flux_uncertainties, strict=True)
        ]
        fit_row = {
            "reduced_chi2": fit.reduced_chi2,
            "dx": float(fit.translation[0]),
            "dy": float(fit.translation[1]),
            "sky": fit.sky,
            "covariance": json.dumps(fit.covariance.tolist()),
            "model_created_mjd": model_row["created_mjd"],
        }
        with engine.begin() as connection:
            replace_roi_fit(connection, frame["id"], set_hash, roi, fit_row, rows)
        return FrameOutcome(
            key,
            False,
            metadata={"reduced_chi2": fit.reduced_chi2}
            | {f"flux_{row['source']}": row["flux"] for row in rows},
        )

    return materialize_frames(context, measure)
