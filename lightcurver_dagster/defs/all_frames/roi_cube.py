"""``roi_cube``: lightcurver's prepared ROI file, for notebooks and for the joint ROI model."""

import dagster as dg

from lightcurver_dagster.defs.automation import rebuilt_daily
from lightcurver_dagster.defs.decorators import all_frames_asset
from lightcurver_dagster.defs.inputs import current_stars
from lightcurver_dagster.defs.per_frame.normalization_coefficient import normalization_coefficient
from lightcurver_dagster.defs.per_frame.zeropoint import zeropoint
from lightcurver_dagster.defs.resources import LightcurverConfigResource, ScienceDatabase, WorkDirectory
from lightcurver_dagster.defs.roi_inputs import RoiSelection, roi_cube_path
from lightcurver_ops.db.frames import frame_rows
from lightcurver_ops.errors import ConfigError
from lightcurver_ops.frame_roi import build_cube
from lightcurver_ops.roi_cube import write_roi_cube


@all_frames_asset(
    deps=[normalization_coefficient, zeropoint],
    automation_condition=rebuilt_daily(),
    kinds={"hdf5"},
    code_version="1",
)
def roi_cube(
    context: dg.AssetExecutionContext,
    lightcurver_config: LightcurverConfigResource,
    science_database: ScienceDatabase,
    work_directory: WorkDirectory,
) -> dg.MaterializeResult:
    """The ROI cutouts of every usable frame divided by their normalisation coefficients, with noise
    maps, masks (kept, not folded into the noise), narrow PSFs, MJD, seeing, sky, zero points, WCS,
    in lightcurver's prepared-ROI layout (``prepared_roi_cutouts_path`` or
    ``prepared_roi_cutouts/cutouts_<hash>_<roi>.h5``). Frames: not eliminated, with a coefficient,
    PSF within ``psf_fit_exclude_strategy``, and within ``constraints_on_frame_columns_for_roi`` and
    ``constraints_on_normalization_coeff`` (columns checked against the tables)."""
    config = lightcurver_config.load()
    engine = science_database.engine
    set_hash, _ = current_stars(engine, config)
    try:
        selection = RoiSelection.load(engine, config, set_hash)
    except ConfigError as exc:
        raise dg.Failure(str(exc)) from exc
    with engine.connect() as connection:
        rows = frame_rows(connection)
    left_out = {row["partition_key"]: selection.rejection(row) for row in rows}
    chosen = [row for row in rows if left_out[row["partition_key"]] is None]
    try:
        cube = build_cube([selection.read(work_directory.root, row) for row in chosen])
    except ValueError as exc:
        raise dg.Failure(f"roi_cube: {exc}") from exc
    path = roi_cube_path(config, work_directory, set_hash)
    global_zp = cube.global_zeropoint()
    write_roi_cube(path, cube, global_zp)
    reasons = sorted({reason for reason in left_out.values() if reason})
    context.log.info(f"ROI cube of {len(chosen)} frames; left out: {reasons or 'none'}")
    return dg.MaterializeResult(
        metadata={
            "n_frames": len(chosen),
            "n_left_out": len(rows) - len(chosen),
            "reasons_left_out": "; ".join(reasons) or "none",
            "global_zeropoint": global_zp[0],
            "global_zeropoint_scatter": global_zp[1],
            "file": dg.MetadataValue.path(str(path)),
        }
    )
