"""``reference_stars``: the Gaia stars the PSF and the normalisation are built from."""

import dagster as dg
from astropy.time import Time

from lightcurver_dagster.defs.all_frames.footprints import footprints
from lightcurver_dagster.defs.automation import when_missing
from lightcurver_dagster.defs.decorators import all_frames_asset
from lightcurver_dagster.defs.resources import (
    LightcurverConfigResource,
    ScienceDatabase,
    StarCatalog,
    WorkDirectory,
)
from lightcurver_ops import paths
from lightcurver_ops.catalog import StarSelection, region_for_selection, select_stars
from lightcurver_ops.db.plate_solutions import latest_combined_footprint, solved_footprints
from lightcurver_ops.db.stars import STAR_COLUMNS, store_star_set
from lightcurver_ops.errors import CatalogError
from lightcurver_ops.star_plots import plot_footprints_with_stars


@all_frames_asset(
    deps=[footprints],
    automation_condition=when_missing(),
    kinds={"python"},
    code_version="1",
)
def reference_stars(
    context: dg.AssetExecutionContext,
    lightcurver_config: LightcurverConfigResource,
    science_database: ScienceDatabase,
    star_catalog: StarCatalog,
    work_directory: WorkDirectory,
) -> dg.MaterializeResult:
    """Reference stars from Gaia DR3 (online or a local catalogue) selected by the config: in the
    ROI disk or the frames' common footprint, magnitude range (either bound may be null), excess-noise
    significance and flux-over-error cuts, none closer than ``ROI_size`` to the ROI; named a, b, ...
    by distance to the ROI. The set is identified by a content hash of every selection parameter
    (lightcurver's ``combined_footprint_hash``): changing a cut makes a new, consistent set.
    Re-materialise it after changing the selection; the frames' cutouts then follow by backfill.
    Online queries are retried with backoff by the catalogue code itself."""
    config = lightcurver_config.load()
    engine = science_database.engine
    with engine.connect() as connection:
        combined = latest_combined_footprint(connection)
        frames = solved_footprints(connection)
    largest, common = combined if combined is not None else (None, None)
    try:
        selection = StarSelection.from_config(config)
        region = region_for_selection(selection, common_footprint=common, largest_footprint=largest)
        chosen = select_stars(star_catalog.stars_in(region), selection, region)
    except CatalogError as exc:
        raise dg.Failure(description=f"reference stars: {exc}") from exc
    set_hash = selection.content_hash(region)
    rows = [{name: _plain(star[name]) for name in STAR_COLUMNS} for star in chosen]
    with engine.begin() as connection:
        store_star_set(connection, set_hash, selection.describe(region), rows, created_mjd=Time.now().mjd)
    plot = work_directory.path(paths.STARS_PLOT)
    plot_footprints_with_stars(
        [frame.corners for frame in frames],
        chosen,
        (config.roi_ra_deg, config.roi_dec_deg),
        config.ROI_disk_radius_arcseconds if selection.strategy == "ROI_disk" else None,
        plot,
    )
    context.log.info(f"star set {set_hash}: {len(rows)} stars")
    return dg.MaterializeResult(
        metadata={
            "star_set_hash": str(set_hash),
            "n_stars": len(rows),
            "stars": dg.MetadataValue.md(_star_table(rows)),
            "plot": dg.MetadataValue.path(str(plot)),
        }
    )


def _plain(value: object) -> object:
    """A numpy scalar as a plain Python value for the database (masked values as None)."""
    if value is None or getattr(value, "mask", False) is True:
        return None
    return value.item() if hasattr(value, "item") else value


def _star_table(rows: list[dict]) -> str:
    lines = ["| name | gaia_id | G | distance (arcsec) |", "|---|---|---|---|"]
    lines += [
        f"| {r['name']} | {r['gaia_id']} | {r['gmag']:.2f} | {r['distance_to_roi_arcsec']:.1f} |"
        for r in rows
    ]
    return "\n".join(lines)
