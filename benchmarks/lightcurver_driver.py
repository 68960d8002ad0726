"""Run lightcurver's whole pipeline (its ``WorkflowManager``) offline, timing each of its tasks.

Runs in the separate lightcurver virtualenv, started by :mod:`benchmarks.compare_lightcurver`; it
imports nothing from this project. The only change to lightcurver's behaviour is at the astroquery
boundary: ``astroquery.gaia.Gaia`` is replaced by an object that answers lightcurver's ADQL query
(magnitude range, excess-noise and flux-over-error cuts, circle or polygon, row limit) from a local
Gaia-DR3-like CSV catalogue, so no network is needed.

    <lightcurver venv>/bin/python benchmarks/lightcurver_driver.py CONFIG CATALOG TIMINGS [START]

CATALOG is the CSV catalogue, TIMINGS the JSON file written with each task's seconds; START (as
lc_run's ``--start``) resumes a run from that task, for debugging.
"""

import json
import os
import re
import sys
import time
import types
from pathlib import Path
from typing import Any

import numpy as np
from astropy.coordinates import SkyCoord
from astropy.table import Table

_NUMBER = r"[-+0-9.eE]+"
_UNITS = {
    "ra": "deg",
    "dec": "deg",
    "ref_epoch": "yr",
    "pmra": "mas / yr",
    "pmdec": "mas / yr",
    "parallax": "mas",
    "phot_g_mean_mag": "mag",
    "phot_bp_mean_mag": "mag",
    "phot_rp_mean_mag": "mag",
    "astrometric_excess_noise": "mas",
}
"""Units of the Gaia archive's columns (its tables carry them; lightcurver relies on ra and dec's)."""


def _filter(catalog: Table, adql: str, row_limit: int) -> Table:
    """The catalogue rows that satisfy ``adql``'s WHERE clause (the forms lightcurver writes)."""
    keep = np.ones(len(catalog), dtype=bool)
    for column, low, high in re.findall(rf"gdr3\.(\w+) BETWEEN ({_NUMBER}) AND ({_NUMBER})", adql):
        keep &= (catalog[column] >= float(low)) & (catalog[column] <= float(high))
    for column, op, value in re.findall(rf"gdr3\.(\w+) ([<>]) ({_NUMBER})", adql):
        keep &= catalog[column] < float(value) if op == "<" else catalog[column] > float(value)
    coords = SkyCoord(np.asarray(catalog["ra"]), np.asarray(catalog["dec"]), unit="deg")
    circle = re.search(rf"CIRCLE\('ICRS', ({_NUMBER}), ({_NUMBER}), ({_NUMBER})\)", adql)
    if circle:
        ra, dec, radius = (float(v) for v in circle.groups())
        keep &= coords.separation(SkyCoord(ra, dec, unit="deg")).deg <= radius
    polygon = re.search(r"POLYGON\('ICRS', ([^)]*)\)", adql)
    if polygon:
        import shapely

        values = [float(v) for v in polygon.group(1).split(",")]
        shape = shapely.Polygon(list(zip(values[::2], values[1::2], strict=True)))
        keep &= shapely.contains_xy(shape, np.asarray(catalog["ra"]), np.asarray(catalog["dec"]))
    if not (circle or polygon):
        raise ValueError(f"offline Gaia: no CIRCLE or POLYGON in the query: {adql}")
    result = catalog[keep]
    return result[:row_limit] if row_limit > 0 else result


class _Job:
    def __init__(self, table: Table) -> None:
        self._table = table

    def get_results(self) -> Table:
        return self._table


class OfflineGaia:
    """Stands in for ``astroquery.gaia.Gaia``: queries are answered from a local catalogue."""

    def __init__(self, catalog_path: Path) -> None:
        self.catalog = Table.read(catalog_path, format="ascii.csv")
        for name, unit in _UNITS.items():
            if name in self.catalog.colnames:
                self.catalog[name].unit = unit
        self.MAIN_GAIA_TABLE = "gaiadr3.gaia_source"
        self.ROW_LIMIT = 50
        self.queries: list[str] = []

    def launch_job_async(self, query: str, *args: Any, **kwargs: Any) -> _Job:
        self.queries.append(query)
        return _Job(_filter(self.catalog, query, self.ROW_LIMIT))

    launch_job = launch_job_async


def install_offline_gaia(catalog_path: Path) -> OfflineGaia:
    """Make ``from astroquery.gaia import Gaia`` return an :class:`OfflineGaia`."""
    import astroquery

    gaia = OfflineGaia(catalog_path)
    module = types.ModuleType("astroquery.gaia")
    module.Gaia = gaia  # type: ignore[attr-defined]
    sys.modules["astroquery.gaia"] = module
    astroquery.gaia = module  # type: ignore[attr-defined]
    return gaia


def main() -> None:
    config_path, catalog_path, timings_path = (Path(a) for a in sys.argv[1:4])
    start_task = sys.argv[4] if len(sys.argv) > 4 else None
    from astropy.utils import iers

    iers.conf.auto_download = False  # offline; the bundled IERS tables cover the simulated dates
    gaia = install_offline_gaia(catalog_path)
    os.environ["LIGHTCURVER_CONFIG"] = str(config_path)

    from lightcurver.pipeline.workflow_manager import WorkflowManager

    timings: dict[str, float] = json.loads(timings_path.read_text())["tasks"] if start_task else {}
    execute = WorkflowManager.execute_task

    def timed(self: WorkflowManager, task: dict[str, Any]) -> None:
        start = time.perf_counter()
        try:
            execute(self, task)
        finally:
            timings[task["name"]] = time.perf_counter() - start
            timings_path.write_text(json.dumps({"tasks": timings, "gaia_queries": gaia.queries}, indent=1))

    WorkflowManager.execute_task = timed  # type: ignore[method-assign]
    WorkflowManager().run(start_step=start_task)


if __name__ == "__main__":
    main()
