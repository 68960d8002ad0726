"""``normalization_coefficient``: each frame's flux scale against the baseline."""

import dagster as dg

from lightcurver_dagster.defs.all_frames.star_reference_fluxes import star_reference_fluxes
from lightcurver_dagster.defs.automation import follows_own_frame
from lightcurver_dagster.defs.decorators import per_frame_asset
from lightcurver_dagster.defs.inputs import current_stars, imported_frame
from lightcurver_dagster.defs.per_frame.batch import FrameOutcome, materialize_frames
from lightcurver_dagster.defs.per_frame.star_fluxes import star_fluxes
from lightcurver_dagster.defs.resources import LightcurverConfigResource, ScienceDatabase, WorkDirectory
from lightcurver_ops import paths
from lightcurver_ops.chi2_bounds import chi2_bounds
from lightcurver_ops.db.normalization import (
    baseline_of_set,
    coefficients_of_set,
    flux_chi2_values,
    replace_coefficient,
    star_fluxes_of_frame,
    star_fluxes_of_set,
)
from lightcurver_ops.frame_photometry import coefficient_inputs, coefficient_row, plot_normalization
from lightcurver_ops.normalization import frame_coefficient

REJECTED_CHECK = "frames_without_coefficient"
MAX_REJECTED_FRACTION = 0.2


@per_frame_asset(
    deps=[star_fluxes, star_reference_fluxes],
    automation_condition=follows_own_frame(),
    kinds={"python", "sql"},
    code_version="1",
    check_specs=[dg.AssetCheckSpec(REJECTED_CHECK, asset="normalization_coefficient")],
)
def normalization_coefficient(
    context: dg.AssetExecutionContext,
    lightcurver_config: LightcurverConfigResource,
    science_database: ScienceDatabase,
    work_directory: WorkDirectory,
):
    """The frame's normalisation coefficient: the weighted, sigma-clipped mean of its stars' flux
    ratios to the baseline (stars accepted by ``fluxes_fit_exclude_strategy`` and kept by the
    baseline), with the error of that mean. A new frame needs only its own fluxes; a new baseline
    re-runs every frame. Also redraws ``plots/normalization.png``."""
    config = lightcurver_config.load()
    engine = science_database.engine
    set_hash, stars = current_stars(engine, config)
    with engine.connect() as connection:
        reference = baseline_of_set(connection, set_hash)
        bounds = chi2_bounds(config.fluxes_fit_exclude_strategy, flux_chi2_values(connection, set_hash))
    if not reference:
        raise dg.Failure(
            "no normalisation baseline for the current star set: materialise star_reference_fluxes"
        )

    def normalise(key: str) -> FrameOutcome:
        with engine.connect() as connection:
            frame = imported_frame(connection, key)
            fluxes = star_fluxes_of_frame(connection, frame["id"], set_hash)
        used_ids, *arrays = coefficient_inputs(fluxes, reference, bounds)
        row, reason = None, None
        if not used_ids:
            reason = "no star flux of this frame is accepted and in the baseline"
        else:
            coefficient = frame_coefficient(*arrays)
            row = coefficient_row(coefficient)
        with engine.begin() as connection:
            replace_coefficient(connection, frame["id"], set_hash, row)
        if row is None:
            return FrameOutcome(key, True, reason)
        return FrameOutcome(key, False, metadata=row | {"n_stars_rejected": len(used_ids) - row["n_stars"]})

    result = materialize_frames(context, normalise)
    names = {star["gaia_id"]: star["name"] for star in stars}
    with engine.connect() as connection:
        coefficients = coefficients_of_set(connection, set_hash)
        all_fluxes = star_fluxes_of_set(connection, set_hash)
    kept = {star: row for star, row in reference.items() if not row["rejected"]}
    n_frames = len({row["frame_id"] for row in all_fluxes})
    fraction = 1.0 - len(coefficients) / n_frames if n_frames else 0.0
    if kept and coefficients:
        brightest = max(kept, key=lambda star: kept[star]["reference_flux"])
        plot = plot_normalization(
            coefficients,
            [row for row in all_fluxes if row["star_gaia_id"] == brightest],
            names.get(brightest, brightest),
            kept[brightest]["reference_flux"],
            work_directory.path(paths.NORMALIZATION_PLOT),
        )
        result = dg.MaterializeResult(metadata={**result.metadata, "plot": dg.MetadataValue.path(str(plot))})
    yield result
    yield dg.AssetCheckResult(
        check_name=REJECTED_CHECK,
        passed=fraction <= MAX_REJECTED_FRACTION,
        severity=dg.AssetCheckSeverity.WARN,
        description="at most 20 % of the frames with star fluxes lack a coefficient",
        metadata={"fraction_without_coefficient": fraction, "n_coefficients": len(coefficients)},
    )
