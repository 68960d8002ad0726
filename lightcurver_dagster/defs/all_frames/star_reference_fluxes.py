"""``star_reference_fluxes``: the normalisation baseline, one reference flux per star."""

import math

import dagster as dg
import numpy as np
from astropy.time import Time

from lightcurver_dagster.defs.automation import rebuilt_daily
from lightcurver_dagster.defs.decorators import BASELINE_TAG, all_frames_asset
from lightcurver_dagster.defs.inputs import current_stars
from lightcurver_dagster.defs.per_frame.star_fluxes import star_fluxes
from lightcurver_dagster.defs.resources import LightcurverConfigResource, ScienceDatabase
from lightcurver_ops.chi2_bounds import chi2_bounds
from lightcurver_ops.db.normalization import replace_baseline, star_fluxes_of_set
from lightcurver_ops.frame_photometry import baseline_rows, flux_matrix
from lightcurver_ops.normalization import fit_baseline

SCATTER_CHECK = "normalization_scatter"
MAX_SCATTER_OVER_NOISE = 1.2
"""The constant stars, normalised, should scatter at most this many times their photon noise."""


@all_frames_asset(
    deps=[star_fluxes],
    automation_condition=rebuilt_daily(),
    kinds={"python", "sql"},
    tags={BASELINE_TAG: ""},
    code_version="1",
    check_specs=[dg.AssetCheckSpec(SCATTER_CHECK, asset="star_reference_fluxes")],
)
def star_reference_fluxes(
    context: dg.AssetExecutionContext,
    lightcurver_config: LightcurverConfigResource,
    science_database: ScienceDatabase,
):
    """The normalisation baseline: one reference flux per normalisation star from every accepted
    flux so far (``fluxes_fit_exclude_strategy``), by a robust bilinear fit flux = star scale x frame
    scale with iterative clipping, so a variable star or a galaxy is rejected as a whole and a bad
    measurement alone. The scale of the earliest well-measured frame is 1. Built when missing, on the
    baseline cron and on demand; a new baseline re-runs every frame's coefficient (cheap)."""
    config = lightcurver_config.load()
    engine = science_database.engine
    set_hash, stars = current_stars(engine, config)
    names = {star["gaia_id"]: star["name"] for star in stars}
    with engine.connect() as connection:
        rows = star_fluxes_of_set(connection, set_hash)
    bounds = chi2_bounds(config.fluxes_fit_exclude_strategy, [row["chi2"] for row in rows])
    star_ids, frame_ids, mjd, flux, sigma = flux_matrix(rows, bounds)
    try:
        baseline = fit_baseline(flux, sigma, frame_order=mjd)
    except ValueError as exc:
        raise dg.Failure(
            f"star_reference_fluxes: {exc} ({len(frame_ids)} frames with accepted fluxes)"
        ) from exc
    with engine.begin() as connection:
        replace_baseline(connection, set_hash, baseline_rows(baseline, star_ids, frame_ids, Time.now().mjd))

    kept = ~baseline.rejected
    scatter = math.sqrt(float(np.nanmedian(baseline.reduced_chi2[kept]))) if kept.any() else math.nan
    rejected = [
        f"{names.get(s, s)} (chi2 {c:.1f})"
        for s, c, r in zip(star_ids, baseline.reduced_chi2, baseline.rejected, strict=True)
        if r
    ]
    context.log.info(
        f"baseline from {len(frame_ids)} frames: {kept.sum()} stars kept, rejected: {rejected or 'none'}"
    )
    yield dg.MaterializeResult(
        metadata={
            "n_frames": len(frame_ids),
            "n_stars": int(kept.sum()),
            "rejected_stars": ", ".join(rejected) or "none",
            "chi2_bounds_fluxes": f"[{bounds[0]:.3g}, {bounds[1]:.3g}]",
            "scatter_over_noise": scatter,
            "reference_frame_id": int(frame_ids[baseline.reference_frame]),
        }
    )
    yield dg.AssetCheckResult(
        check_name=SCATTER_CHECK,
        passed=bool(scatter <= MAX_SCATTER_OVER_NOISE),
        severity=dg.AssetCheckSeverity.WARN,
        description="normalised constant stars scatter at most 1.2x their photon noise (median star)",
        metadata={"scatter_over_noise": scatter, "limit": MAX_SCATTER_OVER_NOISE},
    )
