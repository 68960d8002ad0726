"""``plate_solution``: the WCS of each frame, its footprint, pixel scale and whether it holds the ROI."""

from functools import cache

import dagster as dg
from astropy.io import fits
from astropy.table import Table
from astropy.wcs import WCS

from lightcurver_dagster.defs.automation import follows_own_frame
from lightcurver_dagster.defs.decorators import per_frame_asset
from lightcurver_dagster.defs.inputs import imported_frame
from lightcurver_dagster.defs.per_frame.batch import FrameOutcome, materialize_frames
from lightcurver_dagster.defs.per_frame.calibrated_frame import calibrated_frame
from lightcurver_dagster.defs.resources import (
    LightcurverConfigResource,
    ScienceDatabase,
    StarCatalog,
    WorkDirectory,
)
from lightcurver_ops.catalog import SkyCircle
from lightcurver_ops.db.plate_solutions import reference_wcs, store_plate_solution
from lightcurver_ops.plate_solving import ReferenceFrame, solve_frame, source_positions
from lightcurver_ops.stages import PLATE_SOLUTION, eliminated_before


@per_frame_asset(
    deps=[calibrated_frame],
    automation_condition=follows_own_frame(),
    kinds={"python"},
    code_version="1",
)
def plate_solution(
    context: dg.AssetExecutionContext,
    lightcurver_config: LightcurverConfigResource,
    science_database: ScienceDatabase,
    work_directory: WorkDirectory,
    star_catalog: StarCatalog,
) -> dg.MaterializeResult:
    """WCS of each frame by the config's strategy (header WCS when ``already_plate_solved``,
    astrometry.net, adapted from a solved reference frame, or matched to the star catalogue), with
    its footprint, pixel scale (arcsec/pixel), angle to north and whether the ROI is in it. A frame
    that cannot be solved, is distorted beyond ``max_pixel_anisotropy`` or misses the ROI is
    recorded as eliminated with the reason."""
    config = lightcurver_config.load()
    engine = science_database.engine

    @cache
    def catalog() -> Table:
        radius_deg = config.alternate_plate_solve_gaia_radius / 3600
        return star_catalog.stars_in(SkyCircle(config.roi_ra_deg, config.roi_dec_deg, radius_deg))

    references: dict[int, ReferenceFrame] = {}

    def reference(partition_key: str) -> ReferenceFrame | None:
        """The reference frame's WCS and sources, read once per run."""
        with engine.connect() as connection:
            stored = reference_wcs(connection, config.reference_frame_for_wcs, exclude=partition_key)
        if stored is None or stored.sources_relpath is None:
            return None
        if stored.frame_id not in references:
            sources = Table.read(work_directory.path(stored.sources_relpath))
            wcs = WCS(fits.Header.fromstring(stored.wcs_header))
            references[stored.frame_id] = ReferenceFrame(stored.frame_id, wcs, *source_positions(sources))
        return references[stored.frame_id]

    def solve_one(partition_key: str) -> FrameOutcome:
        with engine.connect() as connection:
            frame = imported_frame(connection, partition_key)
        skipped = eliminated_before(frame, PLATE_SOLUTION)
        if skipped:
            return FrameOutcome(partition_key, True, skipped)
        header = fits.getheader(work_directory.path(frame["image_relpath"]))
        sources = Table.read(work_directory.path(frame["sources_relpath"]))
        shape = (int(header["NAXIS2"]), int(header["NAXIS1"]))
        needs_reference = (
            not config.already_plate_solved and config.plate_solving_strategy == "adapt_wcs_from_reference"
        )
        result = solve_frame(
            config,
            frame,
            header,
            sources,
            shape,
            reference=reference(partition_key) if needs_reference else None,
            catalog=catalog,
        )
        with engine.begin() as connection:
            store_plate_solution(connection, frame["id"], result.frame_updates, result.wcs, result.footprint)
        updates, wcs = result.frame_updates, result.wcs or {}
        return FrameOutcome(
            partition_key,
            result.eliminated,
            updates["comment"],
            metadata={
                "strategy": wcs.get("strategy"),
                "pixel_scale_arcsec": updates["pixel_scale"],
                "angle_to_north_deg": updates["angle_to_north"],
                "seeing_arcseconds": updates["seeing_arcseconds"],
                "n_matches": wcs.get("n_matches"),
                "rms_pixels": wcs.get("rms_pixels"),
            },
        )

    return materialize_frames(context, solve_one)
