"""``regions_h5``: every frame's stamps in lightcurver's ``regions.h5`` layout, for notebooks."""

import dagster as dg
from sqlalchemy import select

from lightcurver_dagster.defs.decorators import all_frames_asset
from lightcurver_dagster.defs.per_frame.cutouts import cutouts
from lightcurver_dagster.defs.resources import ScienceDatabase, WorkDirectory
from lightcurver_ops import paths
from lightcurver_ops.cutouts import export_regions_h5
from lightcurver_ops.db.schema import frames


@all_frames_asset(deps=[cutouts], kinds={"hdf5"}, code_version="1")
def regions_h5(science_database: ScienceDatabase, work_directory: WorkDirectory) -> dg.MaterializeResult:
    """All usable frames' stamps gathered into ``regions.h5`` with lightcurver's layout
    (``/frames/<stem>.fits/{data,noisemap,cosmicsmask,wcs,image_pixel_coordinates}/...``), for
    users who work in notebooks. Built on demand; the per-frame files stay the source of truth."""
    with science_database.engine.connect() as connection:
        rows = connection.execute(
            select(frames.c.partition_key, frames.c.image_relpath).where(frames.c.eliminated == 0)
        ).all()
    files = {
        row.image_relpath: work_directory.path(paths.cutouts_relpath(row.partition_key))
        for row in rows
        if work_directory.path(paths.cutouts_relpath(row.partition_key)).is_file()
    }
    output = work_directory.path(paths.REGIONS_EXPORT)
    export_regions_h5(files, output)
    return dg.MaterializeResult(metadata={"n_frames": len(files), "file": dg.MetadataValue.path(str(output))})
