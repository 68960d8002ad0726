"""``zeropoint``: each frame's absolute zero point from catalogue magnitudes of its stars."""

import math

import dagster as dg
import numpy as np
from astropy.io import fits

from lightcurver_dagster.defs.automation import follows_own_frame
from lightcurver_dagster.defs.decorators import per_frame_asset
from lightcurver_dagster.defs.inputs import current_stars, imported_frame
from lightcurver_dagster.defs.per_frame.batch import FrameOutcome, materialize_frames
from lightcurver_dagster.defs.per_frame.star_fluxes import star_fluxes
from lightcurver_dagster.defs.resources import LightcurverConfigResource, ScienceDatabase, WorkDirectory
from lightcurver_ops import paths
from lightcurver_ops.aperture import aperture_correction
from lightcurver_ops.catalog_magnitudes import gaia_magnitudes, panstarrs_magnitudes
from lightcurver_ops.chi2_bounds import chi2_bounds
from lightcurver_ops.cutouts import read_frame_cutouts
from lightcurver_ops.db.catalog_photometry import cached_magnitudes, replace_zeropoint, store_magnitudes
from lightcurver_ops.db.normalization import flux_chi2_values, star_fluxes_of_frame
from lightcurver_ops.frame_photometry import accepted
from lightcurver_ops.frame_psf import read_psf
from lightcurver_ops.zeropoints import frame_zeropoint, read_panstarrs_file


@per_frame_asset(
    deps=[star_fluxes],
    automation_condition=follows_own_frame(),
    kinds={"python", "sql"},
    code_version="1",
)
def zeropoint(
    context: dg.AssetExecutionContext,
    lightcurver_config: LightcurverConfigResource,
    science_database: ScienceDatabase,
    work_directory: WorkDirectory,
) -> dg.MaterializeResult:
    """Absolute zero point of the frame in ``photometric_band`` (magnitude of 1 e-/s): the median
    over its accepted star fluxes of ``mag + 2.5 log10(flux)``, with the scatter across stars; the
    PSF fluxes are first corrected to total fluxes by the median ratio of a 3-FWHM aperture to the
    PSF flux of the bright stars, extrapolated with the PSF's Moffat (the PSF model, normalised on
    its stamp, misses the far wings).
    Catalogue magnitudes come from Gaia G, BP, RP through the band's colour polynomial (stars
    outside its colour range left out), or from Pan-STARRS DR1 for ``*_panstarrs`` bands (a local
    ``panstarrs_catalog_file`` or MAST, cached per star and band in ``catalog_star_photometry``)."""
    config = lightcurver_config.load()
    engine = science_database.engine
    set_hash, stars = current_stars(engine, config)
    by_id = {star["gaia_id"]: star for star in stars}
    band, survey = config.photometric_band, config.reference_absolute_photometric_survey
    table = None
    if survey == "panstarrs" and config.panstarrs_catalog_file is not None:
        table = read_panstarrs_file(config.resolve(config.panstarrs_catalog_file), band)
    with engine.connect() as connection:
        bounds = chi2_bounds(config.fluxes_fit_exclude_strategy, flux_chi2_values(connection, set_hash))

    def calibrate(key: str) -> FrameOutcome:
        with engine.connect() as connection:
            frame = imported_frame(connection, key)
            fluxes = star_fluxes_of_frame(connection, frame["id"], set_hash)
        ids = sorted(star for star, row in fluxes.items() if accepted(row, bounds) and star in by_id)
        with engine.begin() as connection:
            if survey == "gaia":
                mags = gaia_magnitudes([by_id[star] for star in ids], band)
                rows = [
                    {"star_gaia_id": s, "mag": m, "mag_err": e, "original_catalog_id": s}
                    for s, (m, e) in mags.items()
                ]
            else:
                mags = cached_magnitudes(connection, survey, band, ids)
                found, rows = panstarrs_magnitudes([by_id[s] for s in ids if s not in mags], band, table)
                mags |= found
            store_magnitudes(connection, survey, band, rows)
        usable = [star for star in ids if math.isfinite(mags[star][0])]
        row, reason, correction = None, None, None
        if not usable:
            reason = f"no accepted star flux with a {survey} magnitude in {band}"
        else:
            stamps, _, _ = read_frame_cutouts(work_directory.path(paths.cutouts_relpath(key)), names=usable)
            psf = read_psf(work_directory.path(paths.psf_relpath(key)))
            with fits.open(work_directory.path(frame["image_relpath"])) as hdul:
                image = hdul[0].data
            try:
                correction = aperture_correction(
                    image,
                    frame["background_rms_electron_per_second"],
                    np.array([stamps[s].position for s in usable]),
                    np.array([fluxes[s]["flux"] for s in usable]),
                    psf.moffat_fwhm_pixels,
                    psf.moffat_beta,
                )
            except ValueError as exc:
                reason = f"no aperture correction: {exc}"
        if reason is None:
            total = [fluxes[s]["flux"] * correction.value for s in usable]
            zp, scatter, n_stars = frame_zeropoint([mags[s][0] for s in usable], total)
            row = {"zeropoint": zp, "zeropoint_uncertainty": scatter, "source_catalog": survey}
        with engine.begin() as connection:
            replace_zeropoint(connection, frame["id"], set_hash, row)
        if row is None:
            return FrameOutcome(key, True, reason)
        return FrameOutcome(
            key,
            False,
            metadata={
                "zeropoint": zp,
                "scatter_mag": scatter,
                "n_stars": n_stars,
                "band": band,
                "aperture_correction": correction.value,
                "aperture_correction_stars": correction.n_stars,
            },
        )

    return materialize_frames(context, calibrate)
