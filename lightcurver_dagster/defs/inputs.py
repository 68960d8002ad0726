"""What the per-frame assets read from earlier stages, with one clear failure when it is missing."""

from typing import Any

import dagster as dg
from sqlalchemy import Connection, Engine

from lightcurver_ops.catalog import StarSelection
from lightcurver_ops.config import LightcurverConfig
from lightcurver_ops.db.frames import frame_row
from lightcurver_ops.db.stars import latest_star_set, star_set_exists, stars_of_set

NO_STAR_SET = "no reference-star set for the current selection: materialise reference_stars first"


def imported_frame(connection: Connection, partition_key: str) -> dict[str, Any]:
    """The frame's ``frames`` row; a failure naming the frame if it was never imported."""
    frame = frame_row(connection, partition_key)
    if frame is None:
        raise dg.Failure(f"frame {partition_key}: not imported yet (materialise calibrated_frame first)")
    return frame


def current_star_set(connection: Connection, selection: StarSelection) -> int | None:
    """The star set of the config's selection: its own hash for ``ROI_disk``, else the latest set
    (footprint strategies depend on the frames, so their set is whatever reference_stars built)."""
    if selection.strategy == "ROI_disk":
        set_hash = selection.content_hash()
        return set_hash if star_set_exists(connection, set_hash) else None
    return latest_star_set(connection)


def current_stars(engine: Engine, config: LightcurverConfig) -> tuple[int, list[dict[str, Any]]]:
    """Hash and stars of the current reference-star set; a failure if it was never built."""
    with engine.connect() as connection:
        set_hash = current_star_set(connection, StarSelection.from_config(config))
        if set_hash is None:
            raise dg.Failure(
                "no reference-star set for the current selection: materialise reference_stars first"
            )
        return set_hash, stars_of_set(connection, set_hash)
