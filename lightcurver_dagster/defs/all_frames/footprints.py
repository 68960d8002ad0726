"""``footprints``: union and intersection of the frames' footprints, and bad pointings."""

import dagster as dg
import numpy as np

from lightcurver_dagster.defs.automation import follows_frames
from lightcurver_dagster.defs.decorators import all_frames_asset
from lightcurver_dagster.defs.per_frame.plate_solution import plate_solution
from lightcurver_dagster.defs.resources import LightcurverConfigResource, ScienceDatabase, WorkDirectory
from lightcurver_ops import paths
from lightcurver_ops.astrometry import bad_pointings, combine_footprints
from lightcurver_ops.db.plate_solutions import (
    frames_hash,
    set_bad_pointings,
    solved_footprints,
    store_combined_footprint,
)
from lightcurver_ops.footprint_plots import plot_footprints


@all_frames_asset(
    deps=[plate_solution],
    automation_condition=follows_frames(),
    kinds={"python"},
    code_version="1",
)
def footprints(
    context: dg.AssetExecutionContext,
    lightcurver_config: LightcurverConfigResource,
    science_database: ScienceDatabase,
    work_directory: WorkDirectory,
) -> dg.MaterializeResult:
    """Union and intersection of the footprints of all solved frames (geometry on the sphere's
    tangent plane, so fields across RA 0/360 work), frames pointing far from the others eliminated
    as ``bad_pointing``, and the footprints plot."""
    config = lightcurver_config.load()
    engine = science_database.engine
    with engine.connect() as connection:
        frames = solved_footprints(connection)
    if not frames:
        context.log.warning("no plate-solved frame yet")
        return dg.MaterializeResult(metadata={"n_frames": 0})
    corners = [np.asarray(frame.corners) for frame in frames]
    bad = bad_pointings(corners)
    kept = [frame for frame, is_bad in zip(frames, bad, strict=True) if not is_bad]
    combined = combine_footprints([np.asarray(frame.corners) for frame in kept])
    with engine.begin() as connection:
        set_bad_pointings(
            connection,
            bad=[f.frame_id for f, is_bad in zip(frames, bad, strict=True) if is_bad],
            good=[f.frame_id for f in kept],
        )
        store_combined_footprint(
            connection,
            frames_hash([f.frame_id for f in kept]),
            combined.union_geojson,
            combined.intersection_geojson,
        )
    plot = work_directory.path(paths.FOOTPRINTS_PLOT)
    plot_footprints(
        corners,
        combined.union,
        combined.intersection,
        plot,
        roi=(config.roi_ra_deg, config.roi_dec_deg),
        bad=bad,
    )
    bad_keys = [f.partition_key for f, is_bad in zip(frames, bad, strict=True) if is_bad]
    for key in bad_keys:
        context.log.warning(f"frame {key} eliminated: bad_pointing")
    return dg.MaterializeResult(
        metadata={
            "n_frames": len(kept),
            "n_bad_pointings": len(bad_keys),
            "bad_pointings": ", ".join(bad_keys) or "none",
            "common_footprint": combined.intersection is not None,
            "plot": dg.MetadataValue.path(str(plot)),
        }
    )
