"""``light_curves``: the light curves of the ROI's point sources, as files in ``light_curves/``."""

import json
import shutil

import dagster as dg

from lightcurver_dagster.defs.all_frames.roi_model import roi_model
from lightcurver_dagster.defs.automation import follows_frames
from lightcurver_dagster.defs.decorators import all_frames_asset
from lightcurver_dagster.defs.inputs import current_stars
from lightcurver_dagster.defs.per_frame.roi_fluxes import roi_fluxes
from lightcurver_dagster.defs.per_frame.zeropoint import zeropoint
from lightcurver_dagster.defs.resources import LightcurverConfigResource, ScienceDatabase, WorkDirectory
from lightcurver_ops import paths
from lightcurver_ops.db.catalog_photometry import zeropoints_of_set
from lightcurver_ops.db.normalization import coefficients_of_set
from lightcurver_ops.db.roi import roi_model_row, roi_photometry
from lightcurver_ops.light_curves import (
    EpochPhotometry,
    per_epoch_rows,
    per_night_rows,
    plot_light_curves,
    write_astrometry,
    write_csv,
    write_html,
)
from lightcurver_ops.roi_cube import global_zeropoint


@all_frames_asset(
    deps=[roi_fluxes, roi_model, zeropoint],
    automation_condition=follows_frames(),
    kinds={"csv", "html"},
    code_version="1",
)
def light_curves(
    context: dg.AssetExecutionContext,
    lightcurver_config: LightcurverConfigResource,
    science_database: ScienceDatabase,
    work_directory: WorkDirectory,
) -> dg.MaterializeResult:
    """Light curves of the point sources in ``light_curves/``: ``<roi>_photometry_per_epoch.csv``
    (lightcurver's columns: frame_id, mjd, zeropoint, reduced_chi2, seeing, sky, and per source
    flux, error, magnitude with asymmetric errors), ``<roi>_photometry_per_night.csv``,
    ``<roi>_astrometry.json``, the ROI model FITS, a PNG plot and a self-contained HTML page (opens
    offline). Magnitudes use the global zero point of the normalised fluxes (median over frames of
    ``ZP - 2.5 log10 coefficient``). Updates whenever any frame's ``roi_fluxes`` changes."""
    config = lightcurver_config.load()
    engine = science_database.engine
    set_hash, _ = current_stars(engine, config)
    roi = config.roi_name
    with engine.connect() as connection:
        photometry = roi_photometry(connection, set_hash, roi)
        model_row = roi_model_row(connection, set_hash, roi)
        coefficients = {
            row["frame_id"]: row["coefficient"] for row in coefficients_of_set(connection, set_hash)
        }
        zeropoints = zeropoints_of_set(connection, set_hash)
    if model_row is None or not photometry:
        raise dg.Failure("light_curves: no ROI photometry yet (materialise roi_model and roi_fluxes)")
    frame_ids = [f for f in coefficients if f in zeropoints]
    global_zp, _ = global_zeropoint(
        [zeropoints[f]["zeropoint"] for f in frame_ids], [coefficients[f] for f in frame_ids]
    )
    sources = sorted({label for epoch in photometry for label in epoch["fluxes"]})
    epochs = [
        EpochPhotometry(
            frame_id=epoch["frame_id"],
            mjd=epoch["mjd"],
            zeropoint=global_zp,
            reduced_chi2=epoch["reduced_chi2"],
            seeing=epoch["seeing_arcseconds"],
            sky_level_electron_per_second=epoch["sky_level_electron_per_second"],
            fluxes=epoch["fluxes"],
        )
        for epoch in photometry
    ]
    out = work_directory.path(paths.LIGHT_CURVES_DIR)
    epoch_rows, night_rows = per_epoch_rows(epochs, sources), per_night_rows(epochs, sources)
    files = [
        write_csv(epoch_rows, out / f"{roi}_photometry_per_epoch.csv"),
        write_csv(night_rows, out / f"{roi}_photometry_per_night.csv"),
        *write_astrometry(out / f"{roi}_astrometry.json", json.loads(model_row["astrometry"])),
        plot_light_curves(epoch_rows, night_rows, sources, out / f"{roi}_light_curves.png", roi),
        write_html(epoch_rows, night_rows, sources, out / f"{roi}_light_curves.html", f"{roi} light curves"),
    ]
    prefix = work_directory.path(paths.roi_model_prefix(set_hash, roi))
    for suffix in ("background", "high_res_model"):
        source = prefix.with_name(f"{prefix.name}_{suffix}.fits")
        if source.is_file():
            files.append(out / f"{roi}_{suffix}.fits")
            shutil.copyfile(source, files[-1])
    context.log.info(f"light curves of {len(sources)} sources over {len(epochs)} frames in {out}")
    return dg.MaterializeResult(
        metadata={
            "n_frames": len(epochs),
            "n_nights": len(night_rows),
            "sources": ", ".join(sources),
            "global_zeropoint": global_zp,
            "html": dg.MetadataValue.path(str(out / f"{roi}_light_curves.html")),
            "files": ", ".join(path.name for path in files),
            "directory": dg.MetadataValue.path(str(out)),
        }
    )
