"""``cutouts``: stamps of every reference star in a frame and of the ROI, with noise maps and masks."""

import dagster as dg
from astropy.io import fits
from astropy.wcs import WCS

from lightcurver_dagster.defs.all_frames.reference_stars import reference_stars
from lightcurver_dagster.defs.automation import follows_own_frame_not
from lightcurver_dagster.defs.decorators import per_frame_asset
from lightcurver_dagster.defs.inputs import current_stars, imported_frame
from lightcurver_dagster.defs.per_frame.batch import FrameOutcome, materialize_frames
from lightcurver_dagster.defs.per_frame.plate_solution import plate_solution
from lightcurver_dagster.defs.resources import LightcurverConfigResource, ScienceDatabase, WorkDirectory
from lightcurver_ops import paths
from lightcurver_ops.cutouts import write_frame_cutouts
from lightcurver_ops.db.plate_solutions import stored_wcs
from lightcurver_ops.db.stars import replace_stars_in_frame
from lightcurver_ops.frame_cutouts import make_frame_cutouts
from lightcurver_ops.stages import CUTOUTS, eliminated_before


@per_frame_asset(
    deps=[plate_solution, reference_stars],
    automation_condition=follows_own_frame_not(reference_stars.key.to_user_string()),
    kinds={"python", "hdf5"},
    code_version="1",
)
def cutouts(
    context: dg.AssetExecutionContext,
    lightcurver_config: LightcurverConfigResource,
    science_database: ScienceDatabase,
    work_directory: WorkDirectory,
) -> dg.MaterializeResult:
    """Stamps of each reference star with a full stamp in the frame (proper motion applied to the
    frame's date) and of the ROI, on the frame's pixel grid (never resampled), each with its noise map
    (e-/s: sky and photon noise), a mask (cosmic rays by astroscrappy, bad columns and rows, saturated
    and NaN pixels) and its WCS, in ``cutouts/<frame>.h5``. A new reference-star set does not re-run
    this by itself: backfill the frames after changing the star selection."""
    config = lightcurver_config.load()
    engine = science_database.engine
    set_hash, stars = current_stars(engine, config)

    def cut_one(partition_key: str) -> FrameOutcome:
        with engine.connect() as connection:
            frame = imported_frame(connection, partition_key)
            wcs = stored_wcs(connection, frame["id"])
        output = work_directory.path(paths.cutouts_relpath(partition_key))
        skipped = eliminated_before(frame, CUTOUTS)
        if skipped or wcs is None:
            output.unlink(missing_ok=True)
            with engine.begin() as connection:
                replace_stars_in_frame(connection, frame["id"], set_hash, [])
            return FrameOutcome(partition_key, True, skipped or "no plate solution")
        with fits.open(work_directory.path(frame["image_relpath"])) as hdul:
            image, header = hdul[0].data.astype(float), hdul[0].header
        result = make_frame_cutouts(
            config, frame, image, header, WCS(fits.Header.fromstring(wcs.wcs_header)), stars
        )
        attributes = {"partition_key": partition_key, "frame_id": frame["id"], "mjd": frame["mjd"]}
        attributes["star_set_hash"] = str(set_hash)
        write_frame_cutouts(output, result.stamps, attributes, frame_shape=image.shape)
        with engine.begin() as connection:
            replace_stars_in_frame(connection, frame["id"], set_hash, result.star_ids)
        masked = [float(stamp.mask.mean()) for stamp in result.stamps.values()]
        return FrameOutcome(
            partition_key,
            False,
            metadata={
                "n_star_stamps": len(result.star_ids),
                "bad_columns": len(result.bad_columns),
                "bad_rows": len(result.bad_rows),
                "median_masked_fraction": sorted(masked)[len(masked) // 2],
                "file": dg.MetadataValue.path(str(output)),
            },
        )

    return materialize_frames(context, cut_one)
