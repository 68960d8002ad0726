"""``calibrated_frame``: raw FITS in ADU to a sky-subtracted frame in e-/s with its sources and seeing."""

import dagster as dg

from lightcurver_dagster.defs.decorators import per_frame_asset
from lightcurver_dagster.defs.per_frame.batch import FrameOutcome, materialize_frames
from lightcurver_dagster.defs.resources import LightcurverConfigResource, ScienceDatabase, WorkDirectory
from lightcurver_ops.db.frames import frame_with_same_content, raw_file_for, upsert_frame
from lightcurver_ops.frame_import import import_raw_file


@per_frame_asset(
    kinds={"python", "fits"},
    code_version="2",
)
def calibrated_frame(
    context: dg.AssetExecutionContext,
    lightcurver_config: LightcurverConfigResource,
    science_database: ScienceDatabase,
    work_directory: WorkDirectory,
) -> dg.MaterializeResult:
    """Raw frame converted to e-/s and sky-subtracted, with its source catalogue, seeing, sky level,
    ellipticity and ephemeris (airmass, Moon, Sun), stored as ``frames/<frame>.fits`` and a row of
    ``frames``. An unusable frame (unreadable, header rejected, no stars, duplicate of another
    frame) is recorded as eliminated with the reason in ``comment``."""
    config = lightcurver_config.load()
    parser = lightcurver_config.header_parser()
    engine = science_database.engine

    def import_one(partition_key: str) -> FrameOutcome:
        with engine.connect() as connection:
            raw = raw_file_for(connection, partition_key)
        if raw is None:
            raise dg.Failure(
                f"frame {partition_key}: no raw file registered (the raw-frames sensor registers them)"
            )
        path = config.resolve(raw.path)

        def find_duplicate(sha256: str) -> str | None:
            with engine.connect() as connection:
                return frame_with_same_content(connection, sha256, partition_key)

        result = import_raw_file(config, parser, partition_key, path, find_duplicate)
        with engine.begin() as connection:
            frame_id = upsert_frame(connection, result.row)
        row = result.row
        return FrameOutcome(
            partition_key=partition_key,
            eliminated=result.eliminated,
            comment=row["comment"],
            metadata={
                "frame_id": frame_id,
                "raw_path": dg.MetadataValue.path(str(path)),
                "seeing_pixels": row["seeing_pixels"],
                "sky_level_electron_per_second": row["sky_level_electron_per_second"],
                "background_rms_electron_per_second": row["background_rms_electron_per_second"],
                "n_sources": row["n_sources"],
                "ellipticity": row["ellipticity"],
                "airmass": row["airmass"],
                "image": _path_metadata(work_directory, row["image_relpath"]),
                "sources": _path_metadata(work_directory, row["sources_relpath"]),
                "source_plot": dg.MetadataValue.path(str(result.plot_path)) if result.plot_path else None,
            },
        )

    return materialize_frames(context, import_one)


def _path_metadata(work_directory: WorkDirectory, relpath: str | None) -> dg.MetadataValue | None:
    return dg.MetadataValue.path(str(work_directory.path(relpath))) if relpath else None
