"""Gaia reference stars: catalogue input, sky regions, selection, naming, star-set identity, proper motion.

The catalogue comes from a local file (CSV, FITS or VOTable with Gaia DR3 column names) or from an
online query of the Gaia archive or VizieR. Every source is brought to one normalised table
(`CATALOG_COLUMNS`), and the same local code selects the reference stars from it: the online query
asks only for the sources in a circle covering the region, without quality cuts, so an online and an
offline catalogue holding the same sources give the same star set.

Fixes of lightcurver 1.2.4 (spec §4, §6.5, §11.3 items 9-10):

- A star set is identified by `StarSelection.content_hash`, a hash of every parameter that decides
  which stars are selected and how they are named (cuts, region, ROI, catalogue), not by the disk
  radius or the frame set alone (issue #12): changing any cut gives a new, self-consistent set.
- A null magnitude bound means "no bound" (lightcurver built invalid ADQL).
- Regions are tested on the sphere (tangent-plane projection), correct across RA 0/360.
- Which stars a frame holds is decided at the frame's date (proper motion applied) and requires the
  whole stamp inside the image; lightcurver ignored both.
- ``min_number_stars`` is checked after the ROI itself is excluded.

Conventions: angles in degrees unless named ``*_arcsec``; proper motions in mas/yr (``pmra`` includes
cos Dec); Gaia reference epochs in Julian years; dates in MJD; pixels 0-based (pixel ``(x, y)`` is
``data[y, x]``, its centre at integer ``x, y``).
"""

import hashlib
import json
import math
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from numbers import Integral, Real
from pathlib import Path
from typing import Any, Literal, TypeAlias, get_args

import numpy as np
import shapely
import shapely.geometry
from astropy.table import Table
from astropy.wcs import WCS

from lightcurver_ops import files
from lightcurver_ops._checks import check_positive
from lightcurver_ops.config import LightcurverConfig
from lightcurver_ops.errors import CatalogError
from lightcurver_ops.sky import radec, separation_deg, tangent_plane_offsets, unit_vectors, wrap_ra

Strategy: TypeAlias = Literal["ROI_disk", "common_footprint_stars", "stars_per_frame"]
Provider: TypeAlias = Literal["gaia", "vizier", "file"]
STRATEGIES: tuple[str, ...] = get_args(Strategy)
PROVIDERS: tuple[str, ...] = get_args(Provider)

GAIA_DR3_REF_EPOCH = 2016.0
"""Reference epoch (Julian year) of Gaia DR3 positions; used where a catalogue has no ``ref_epoch``."""

GAIA_TABLE = "gaiadr3.gaia_source"
VIZIER_TAP_URL = "https://TAPVizieR.cds.unistra.fr/TAPVizieR/tap"
VIZIER_TABLE = "I/355/gaiadr3"

CATALOG_COLUMNS = (
    "source_id",
    "ra",
    "dec",
    "ref_epoch",
    "pmra",
    "pmdec",
    "parallax",
    "phot_g_mean_mag",
    "phot_bp_mean_mag",
    "phot_rp_mean_mag",
    "phot_g_mean_flux_over_error",
    "astrometric_excess_noise",
    "astrometric_excess_noise_sig",
)
"""Columns of a normalised catalogue, in order (Gaia DR3 names and units)."""

_OPTIONAL_COLUMNS = {
    "ref_epoch": GAIA_DR3_REF_EPOCH,
    "parallax": math.nan,
    "astrometric_excess_noise": math.nan,
}
REQUIRED_COLUMNS = tuple(name for name in CATALOG_COLUMNS if name not in _OPTIONAL_COLUMNS)
"""Columns a catalogue must have; the others default to DR3's epoch and NaN."""

VIZIER_COLUMNS = {
    "Source": "source_id",
    "RA_ICRS": "ra",
    "DE_ICRS": "dec",
    "pmRA": "pmra",
    "pmDE": "pmdec",
    "Plx": "parallax",
    "Gmag": "phot_g_mean_mag",
    "BPmag": "phot_bp_mean_mag",
    "RPmag": "phot_rp_mean_mag",
    "RFG": "phot_g_mean_flux_over_error",
    "epsi": "astrometric_excess_noise",
    "sepsi": "astrometric_excess_noise_sig",
}
"""VizieR ``I/355/gaiadr3`` columns and their Gaia archive names (positions at epoch 2016.0)."""

STAR_COLUMNS = (
    "name",
    "gaia_id",
    "ra",
    "dec",
    "gmag",
    "rmag",
    "bmag",
    "pmra",
    "pmdec",
    "ref_epoch",
    "distance_to_roi_arcsec",
    "source_id",
    "parallax",
    "phot_g_mean_flux_over_error",
    "astrometric_excess_noise",
    "astrometric_excess_noise_sig",
)
"""Columns of `select_stars`' result: lightcurver's ``stars`` columns first (``rmag`` is Gaia RP,
``bmag`` Gaia BP, as in lightcurver), then the catalogue values the selection used."""

SELECTION_RULES_VERSION = 1
"""Version of the selection rules, part of the content hash: bump it when `select_stars` changes
which stars a given set of parameters selects or how they are named."""

MAX_QUERY_ROWS = 1_000_000
"""An online answer with this many rows is taken as truncated (an error, not a silent cut)."""

_QUERY_MARGIN_DEG = 1.0 / 3600.0  # the covering circle is this much larger than the region
_FILE_FORMATS = {
    ".csv": "ascii.csv",
    ".ecsv": "ascii.ecsv",
    ".fits": "fits",
    ".fit": "fits",
    ".fts": "fits",
    ".vot": "votable",
    ".votable": "votable",
    ".xml": "votable",
}
_MJD_J2000 = 51544.5  # MJD of the Julian epoch J2000.0 (TT; the offset to UTC is irrelevant here)
_DAYS_PER_JULIAN_YEAR = 365.25
_MAS_TO_RAD = math.radians(1.0 / 3.6e6)


# --------------------------------------------------------------------------------------------------
# Spherical geometry


def _check_sky_position(name: str, ra: object, dec: object) -> None:
    for label, value in ((f"{name} RA", ra), (f"{name} Dec", dec)):
        if isinstance(value, bool) or not isinstance(value, Real) or not math.isfinite(value):
            raise ValueError(f"{label} must be a finite number of degrees, got {value!r}")
    if not -90.0 <= float(dec) <= 90.0:
        raise ValueError(f"{name} Dec must be within [-90, 90] deg, got {dec!r}")


@dataclass(frozen=True)
class SkyCircle:
    """A circle on the sky (a small circle of the sphere).

    Attributes
    ----------
    ra, dec : float
        Centre (deg).
    radius_deg : float
        Angular radius (deg), at most 90.
    """

    ra: float
    dec: float
    radius_deg: float

    def __post_init__(self) -> None:
        _check_sky_position("circle centre", self.ra, self.dec)
        check_positive("radius_deg", self.radius_deg)
        if self.radius_deg > 90.0:
            raise ValueError(f"radius_deg must be at most 90, got {self.radius_deg!r}")

    @property
    def centre(self) -> tuple[float, float]:
        """``(ra, dec)`` of the centre (deg)."""
        return float(self.ra), float(self.dec)

    @property
    def bounding_radius_deg(self) -> float:
        """Radius (deg) of the smallest circle about `centre` holding the region."""
        return float(self.radius_deg)

    def contains(self, ra: Any, dec: Any) -> np.ndarray:
        """True for positions (deg, arrays broadcast) at most ``radius_deg`` from the centre."""
        return np.asarray(separation_deg(ra, dec, self.ra, self.dec) <= self.radius_deg)

    def describe(self) -> dict[str, Any]:
        """JSON-able description (deg)."""
        return {"circle": [float(self.ra), float(self.dec), float(self.radius_deg)]}


@dataclass(frozen=True)
class SkyPolygon:
    """A polygon on the sky whose edges are great-circle arcs (straight in the tangent plane).

    Attributes
    ----------
    vertices : tuple of (float, float)
        ``(ra, dec)`` vertices in deg, in order, without repeating the first; stored with RA in
        [0, 360). At least three, all within 90 deg of their mean direction, not self-intersecting.
    """

    vertices: tuple[tuple[float, float], ...]

    def __post_init__(self) -> None:
        try:
            points = [(float(ra), float(dec)) for ra, dec in self.vertices]
        except (TypeError, ValueError):
            raise ValueError(f"vertices must be (ra, dec) pairs in deg, got {self.vertices!r}") from None
        if len(points) > 1 and points[0] == points[-1]:
            points = points[:-1]
        if len(points) < 3:
            raise ValueError(f"a sky polygon needs at least 3 distinct vertices, got {len(points)}")
        for n, (ra, dec) in enumerate(points):
            _check_sky_position(f"vertex {n}", ra, dec)
        object.__setattr__(self, "vertices", tuple((float(wrap_ra(ra)), dec) for ra, dec in points))
        mean = unit_vectors(*np.array(self.vertices).T).sum(axis=0)
        if np.linalg.norm(mean) < 1e-9:
            raise ValueError("polygon vertices have no mean direction (they span the whole sphere)")
        xi, eta = tangent_plane_offsets(*np.array(self.vertices).T, *self.centre)
        if not np.all(np.isfinite(xi)):
            raise ValueError("polygon vertices must all lie within 90 deg of their mean direction")
        plane = shapely.Polygon(np.column_stack([xi, eta]))
        if not plane.is_valid or plane.area == 0:
            raise ValueError(f"polygon is self-intersecting or degenerate: {self.vertices!r}")

    @classmethod
    def from_footprint(cls, footprint: Any) -> "SkyPolygon":
        """A sky polygon from a footprint in any of the forms the pipeline stores.

        Parameters
        ----------
        footprint : SkyPolygon, shapely.Polygon, GeoJSON mapping or str, or sequence of (ra, dec)
            Coordinates in deg (a shapely or GeoJSON polygon's exterior ring is used; it must have
            no holes and be one piece).

        Raises
        ------
        CatalogError
            If the footprint is several polygons, has holes, or is empty.
        """
        if isinstance(footprint, SkyPolygon):
            return footprint
        if isinstance(footprint, str):
            footprint = json.loads(footprint)
        if isinstance(footprint, Mapping):
            footprint = shapely.geometry.shape(footprint)
        if isinstance(footprint, shapely.Geometry):
            if not isinstance(footprint, shapely.Polygon) or footprint.is_empty or footprint.interiors:
                raise CatalogError(
                    f"footprint must be one polygon without holes, got {footprint.geom_type} "
                    f"({'empty' if footprint.is_empty else 'with holes or in pieces'})"
                )
            footprint = list(footprint.exterior.coords)
        return cls(tuple(tuple(vertex) for vertex in footprint))

    @property
    def centre(self) -> tuple[float, float]:
        """``(ra, dec)`` of the mean direction of the vertices (deg), the projection centre."""
        ra, dec = radec(unit_vectors(*np.array(self.vertices).T).sum(axis=0))
        return float(ra), float(dec)

    @property
    def bounding_radius_deg(self) -> float:
        """Radius (deg) of a circle about `centre` holding the polygon (its farthest vertex)."""
        ra, dec = np.array(self.vertices).T
        return float(np.max(separation_deg(ra, dec, *self.centre)))

    def contains(self, ra: Any, dec: Any) -> np.ndarray:
        """True for positions (deg, arrays broadcast) inside the polygon or on its edges."""
        ra0, dec0 = self.centre
        xi, eta = tangent_plane_offsets(ra, dec, ra0, dec0)
        plane = shapely.Polygon(np.column_stack(tangent_plane_offsets(*np.array(self.vertices).T, ra0, dec0)))
        finite = np.isfinite(xi) & np.isfinite(eta)
        inside = shapely.intersects_xy(plane, np.where(finite, xi, 0.0), np.where(finite, eta, 0.0))
        return np.asarray(finite & inside)

    def describe(self) -> dict[str, Any]:
        """JSON-able description (deg)."""
        return {"polygon": [[float(ra), float(dec)] for ra, dec in self.vertices]}


Region: TypeAlias = SkyCircle | SkyPolygon


def _check_region(region: object) -> None:
    if not isinstance(region, SkyCircle | SkyPolygon):
        raise ValueError(f"region must be a SkyCircle or SkyPolygon, got {type(region).__name__}")


# --------------------------------------------------------------------------------------------------
# Catalogue input


def _float_column(table: Table, name: str, source: str) -> np.ndarray:
    """A column as float64 with masked entries as NaN."""
    try:
        return np.ma.filled(np.ma.asarray(table[name]).astype(np.float64), np.nan)
    except (TypeError, ValueError):
        raise CatalogError(f"{source}: column '{name}' is not numeric (dtype {table[name].dtype})") from None


def _source_ids(table: Table, source: str) -> np.ndarray:
    """``source_id`` as int64: integers or decimal strings, none missing, no duplicates."""
    column = np.ma.asarray(table["source_id"])
    if np.ma.count_masked(column):
        raise CatalogError(f"{source}: {np.ma.count_masked(column)} source(s) have no source_id")
    values = np.ma.getdata(column)
    if values.dtype.kind in "iu":
        ids = values.astype(np.int64)
    elif values.dtype.kind in "USO":
        try:
            ids = np.array([int(str(value).strip()) for value in values], dtype=np.int64)
        except (ValueError, OverflowError):
            raise CatalogError(f"{source}: source_id must hold integers, got non-integer text") from None
    else:
        raise CatalogError(
            f"{source}: source_id must be an integer column (a {values.dtype} column loses "
            "the digits of Gaia identifiers)"
        )
    unique, counts = np.unique(ids, return_counts=True)
    if np.any(counts > 1):
        raise CatalogError(f"{source}: duplicated source_id {', '.join(map(str, unique[counts > 1][:5]))}")
    return ids


def normalize_catalog(table: Table, source: str) -> Table:
    """Bring a table with Gaia DR3 column names (any case) to the standard catalogue columns.

    Parameters
    ----------
    table : astropy.table.Table
        Catalogue with at least `REQUIRED_COLUMNS` (case-insensitive); other columns are dropped.
    source : str
        Origin named in errors (a file path, ``'gaia query'``).

    Returns
    -------
    astropy.table.Table
        `CATALOG_COLUMNS` in order: ``source_id`` int64, the others float64 with missing values NaN,
        except ``pmra``/``pmdec`` (missing = 0 mas/yr, no proper motion known) and ``ref_epoch``
        (missing = 2016.0, Gaia DR3's epoch). Units: deg, Julian year, mas/yr, mas, mag.

    Raises
    ------
    CatalogError
        Naming the source and the missing columns, a non-numeric column, or bad ``source_id`` values.
    """
    lower = [name.lower() for name in table.colnames]
    duplicated = sorted({name for name in lower if lower.count(name) > 1})
    if duplicated:
        raise CatalogError(f"{source}: columns differing only in case: {', '.join(duplicated)}")
    columns = dict(zip(lower, table.colnames, strict=True))
    missing = [name for name in REQUIRED_COLUMNS if name not in columns]
    if missing:
        raise CatalogError(
            f"{source}: missing column(s) {', '.join(missing)} (found: {', '.join(table.colnames) or 'none'})"
        )
    renamed = Table({name: table[columns[name]] for name in CATALOG_COLUMNS if name in columns}, copy=False)
    out = Table()
    out["source_id"] = _source_ids(renamed, source)
    for name in CATALOG_COLUMNS[1:]:
        if name in renamed.colnames:
            values = _float_column(renamed, name, source)
        else:
            values = np.full(len(renamed), _OPTIONAL_COLUMNS[name])
        if name in ("pmra", "pmdec"):
            values = np.nan_to_num(values, nan=0.0)
        elif name == "ref_epoch":
            values = np.where(np.isnan(values), GAIA_DR3_REF_EPOCH, values)
        out[name] = values
    return out


def read_catalog_file(path: Path | str) -> Table:
    """Read a local catalogue with Gaia DR3 column names and normalise it.

    Parameters
    ----------
    path : Path or str
        CSV (``.csv``), ECSV, FITS (``.fits``, ``.fit``, ``.fts``) or VOTable (``.vot``, ``.votable``,
        ``.xml``) file, optionally gzipped (``.gz``); other suffixes are left to astropy's format
        detection. Column names are matched case-insensitively.

    Returns
    -------
    astropy.table.Table
        The normalised catalogue (see `normalize_catalog`).

    Raises
    ------
    CatalogError
        Naming the file: missing, unreadable in its format, or lacking required columns.
    """
    path = Path(path)
    if not path.is_file():
        raise CatalogError(f"catalogue file {path} does not exist")
    suffixes = [s.lower() for s in path.suffixes]
    suffix = suffixes[-2] if len(suffixes) > 1 and suffixes[-1] == ".gz" else (suffixes or [""])[-1]
    file_format = _FILE_FORMATS.get(suffix)
    try:
        table = Table.read(path, format=file_format)
    except Exception as exc:  # astropy raises many types for a malformed file; all mean "unreadable"
        what = file_format or "a table"
        raise CatalogError(f"catalogue file {path}: cannot read it as {what}: {exc}") from exc
    return normalize_catalog(table, str(path))


def file_sha256(path: Path | str) -> str:
    """Hex SHA-256 of a file's content; a `CatalogError` naming the file if it cannot be read."""
    try:
        return files.file_sha256(path)
    except OSError as exc:
        raise CatalogError(f"catalogue file {path}: {exc.strerror or exc}") from None


# --------------------------------------------------------------------------------------------------
# Online catalogue


def gaia_adql(region: Region, provider: Literal["gaia", "vizier"]) -> str:
    """ADQL selecting every Gaia DR3 source in a circle covering ``region``, with no quality cuts.

    The circle is the region's bounding circle plus 1 arcsec, so that the exact region test and all
    cuts run locally in `select_stars`, the same code as for a local catalogue. (A server-side
    POLYGON would differ from the local test in edge semantics and vertex-order rules.)

    Parameters
    ----------
    region : SkyCircle or SkyPolygon
        The region stars are selected in.
    provider : {'gaia', 'vizier'}
        ``'gaia'``: ``gaiadr3.gaia_source`` on the Gaia archive; ``'vizier'``: ``"I/355/gaiadr3"`` on
        TAPVizieR (VizieR column names, positions at epoch 2016.0).

    Returns
    -------
    str
        The query.
    """
    _check_region(region)
    ra0, dec0 = region.centre
    radius = min(region.bounding_radius_deg + _QUERY_MARGIN_DEG, 90.0)
    if provider == "gaia":
        columns, table, ra, dec = ", ".join(CATALOG_COLUMNS), GAIA_TABLE, "ra", "dec"
    elif provider == "vizier":
        columns, table, ra, dec = ", ".join(VIZIER_COLUMNS), f'"{VIZIER_TABLE}"', "RA_ICRS", "DE_ICRS"
    else:
        raise ValueError(f"provider must be 'gaia' or 'vizier' for an online query, got {provider!r}")
    return (
        f"SELECT {columns} FROM {table} WHERE 1=CONTAINS(POINT('ICRS', {ra}, {dec}), "
        f"CIRCLE('ICRS', {ra0!r}, {dec0!r}, {radius!r}))"
    )


def _call_with_timeout(function: Callable[[], Table], timeout_s: float) -> Table:
    """``function()`` in a daemon thread; `TimeoutError` if it has not returned after ``timeout_s``.

    astroquery's TAP connections have no timeout of their own; an abandoned call ends with the process.
    """
    outcome: dict[str, Any] = {}

    def target() -> None:
        try:
            outcome["value"] = function()
        except BaseException as exc:  # handed to the caller's thread
            outcome["error"] = exc

    worker = threading.Thread(target=target, name="gaia-query", daemon=True)
    worker.start()
    worker.join(timeout_s)
    if worker.is_alive():
        raise TimeoutError(f"no answer within {timeout_s:g} s")
    if "error" in outcome:
        raise outcome["error"]
    return outcome["value"]


def _run_query(query: str, provider: str) -> Table:
    """Send ``query`` through astroquery (imported here: it is slow to import and tries the network)."""
    if provider == "gaia":
        from astroquery.gaia import Gaia

        return Gaia.launch_job_async(query).get_results()
    from astroquery.utils.tap.core import TapPlus

    return TapPlus(url=VIZIER_TAP_URL).launch_job(query, maxrec=MAX_QUERY_ROWS).get_results()


def query_gaia(
    region: Region,
    provider: Literal["gaia", "vizier"] = "gaia",
    *,
    retries: int = 3,
    timeout_s: float = 600.0,
    backoff_s: float = 2.0,
) -> Table:
    """Gaia DR3 sources around ``region`` from the Gaia archive or VizieR, normalised.

    The query (`gaia_adql`) returns every source in a circle covering the region, without cuts;
    `select_stars` then applies the region and the cuts, exactly as for a local catalogue.

    Parameters
    ----------
    region : SkyCircle or SkyPolygon
        The selection region.
    provider : {'gaia', 'vizier'}
        The service.
    retries : int
        Further attempts after a network failure (connection, HTTP, timeout); at most
        ``retries + 1`` attempts in all.
    timeout_s : float
        Wall-clock limit of one attempt (s).
    backoff_s : float
        Wait before the first retry (s), doubled before each further one.

    Returns
    -------
    astropy.table.Table
        Normalised catalogue (`normalize_catalog`); VizieR columns are renamed to Gaia's and
        ``ref_epoch`` is 2016.0.

    Raises
    ------
    CatalogError
        Naming the provider and the last error once every attempt failed, or if the answer
        reached `MAX_QUERY_ROWS` (truncated).
    """
    query = gaia_adql(region, provider)
    if isinstance(retries, bool) or not isinstance(retries, Integral) or retries < 0:
        raise ValueError(f"retries must be a non-negative integer, got {retries!r}")
    check_positive("timeout_s", timeout_s)
    if isinstance(backoff_s, bool) or not isinstance(backoff_s, Real) or not 0 <= backoff_s < math.inf:
        raise ValueError(f"backoff_s must be a finite non-negative number, got {backoff_s!r}")
    for attempt in range(retries + 1):
        if attempt:
            time.sleep(backoff_s * 2 ** (attempt - 1))
        try:
            table = _call_with_timeout(lambda: _run_query(query, provider), timeout_s)
            break
        except OSError as exc:  # ConnectionError, TimeoutError, requests' and urllib's HTTP errors
            last_error = exc
    else:
        raise CatalogError(
            f"{provider} query failed after {retries + 1} attempt(s): "
            f"{type(last_error).__name__}: {last_error}"
        ) from last_error
    if len(table) >= MAX_QUERY_ROWS:
        raise CatalogError(
            f"{provider} query returned {len(table)} rows, the row limit: the answer is "
            "truncated; use a smaller region"
        )
    if provider == "vizier":
        renames = {name.lower(): gaia for name, gaia in VIZIER_COLUMNS.items()}
        table = Table({renames.get(name.lower(), name): table[name] for name in table.colnames}, copy=False)
    return normalize_catalog(table, f"{provider} query")


# --------------------------------------------------------------------------------------------------
# Selection parameters and star-set identity


def _optional_number(name: str, value: object) -> None:
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, Real) or not math.isfinite(value):
        raise ValueError(f"{name} must be a finite number or None (no bound), got {value!r}")


def catalog_identity(provider: Provider, catalog_file: Path | str | None = None) -> str:
    """What identifies the catalogue a selection reads, for the star-set hash.

    ``'gaia:gaiadr3.gaia_source'``, ``'vizier:I/355/gaiadr3'``, or for a local file
    ``'file:sha256:<hex>'`` of its content: the set follows the catalogue's content, not where the
    file lies (moving or renaming it keeps the set; editing it makes a new one). The two online
    providers have distinct identities because their copies of DR3 may differ in rounding.

    Raises
    ------
    CatalogError
        If the file cannot be read.
    """
    if provider == "gaia":
        return f"gaia:{GAIA_TABLE}"
    if provider == "vizier":
        return f"vizier:{VIZIER_TABLE}"
    if provider != "file":
        raise ValueError(f"provider must be one of {', '.join(PROVIDERS)}, got {provider!r}")
    if catalog_file is None:
        raise ValueError("catalog_file is required for provider 'file'")
    return f"file:sha256:{file_sha256(catalog_file)}"


@dataclass(frozen=True)
class StarSelection:
    """Every parameter of the reference-star selection (lightcurver's config keys in brackets).

    Attributes
    ----------
    strategy : {'ROI_disk', 'common_footprint_stars', 'stars_per_frame'}
        Region of the selection [star_selection_strategy].
    disk_radius_arcsec : float
        Radius of the ROI disk (arcsec) [ROI_disk_radius_arcseconds]; used by ``'ROI_disk'`` only.
    gmag_min, gmag_max : float or None
        Inclusive G magnitude range; None is no bound [star_min_gmag, star_max_gmag].
    max_excess_noise_sig : float or None
        Keep ``astrometric_excess_noise_sig < max`` [star_max_astrometric_excess_noise]. The key says
        "excess noise", but lightcurver cuts on its significance, and so does this; None is no cut.
    min_flux_over_error : float or None
        Keep ``phot_g_mean_flux_over_error > min`` [min_phot_g_mean_flux_over_error]; None is no cut.
    min_number_stars : int
        Fewer stars is an error [min_number_stars]. Not part of the star-set identity: it never
        changes which stars are selected.
    roi_size_arcsec : float
        Stars this close to the ROI or closer are the target itself and dropped [ROI_size].
    roi_ra, roi_dec : float
        The ROI (deg) [ROI]; distances and names are counted from it.
    provider : {'gaia', 'vizier', 'file'}
        Catalogue source [gaia_provider].
    catalog_identity : str
        See `catalog_identity`.
    catalog_file : Path or None
        The local catalogue for provider ``'file'`` [gaia_catalog_file]; its location is not part
        of the identity, its content is.
    """

    strategy: Strategy
    disk_radius_arcsec: float
    gmag_min: float | None
    gmag_max: float | None
    max_excess_noise_sig: float | None
    min_flux_over_error: float | None
    min_number_stars: int
    roi_size_arcsec: float
    roi_ra: float
    roi_dec: float
    provider: Provider
    catalog_identity: str
    catalog_file: Path | None = None

    def __post_init__(self) -> None:
        if self.strategy not in STRATEGIES:
            raise ValueError(f"strategy must be one of {', '.join(STRATEGIES)}, got {self.strategy!r}")
        check_positive("disk_radius_arcsec", self.disk_radius_arcsec)
        for name in ("gmag_min", "gmag_max", "max_excess_noise_sig", "min_flux_over_error"):
            _optional_number(name, getattr(self, name))
        if self.gmag_min is not None and self.gmag_max is not None and self.gmag_min > self.gmag_max:
            raise ValueError(f"gmag_min {self.gmag_min} exceeds gmag_max {self.gmag_max}")
        if (
            isinstance(self.min_number_stars, bool)
            or not isinstance(self.min_number_stars, Integral)
            or self.min_number_stars < 1
        ):
            raise ValueError(f"min_number_stars must be a positive integer, got {self.min_number_stars!r}")
        check_positive("roi_size_arcsec", self.roi_size_arcsec)
        _check_sky_position("ROI", self.roi_ra, self.roi_dec)
        if self.provider not in PROVIDERS:
            raise ValueError(f"provider must be one of {', '.join(PROVIDERS)}, got {self.provider!r}")
        prefix = f"{self.provider}:"
        if not isinstance(self.catalog_identity, str) or not self.catalog_identity.startswith(prefix):
            raise ValueError(f"catalog_identity must start with '{prefix}', got {self.catalog_identity!r}")
        if self.provider == "file" and self.catalog_file is None:
            raise ValueError("catalog_file is required for provider 'file'")

    @classmethod
    def from_config(cls, config: LightcurverConfig) -> "StarSelection":
        """The selection of a lightcurver config (a local catalogue file is read to hash it).

        Raises
        ------
        CatalogError
            If the config's ``gaia_catalog_file`` cannot be read.
        """
        catalog_file = config.resolve(config.gaia_catalog_file) if config.gaia_provider == "file" else None
        return cls(
            strategy=config.star_selection_strategy,
            disk_radius_arcsec=config.ROI_disk_radius_arcseconds,
            gmag_min=config.star_min_gmag,
            gmag_max=config.star_max_gmag,
            max_excess_noise_sig=config.star_max_astrometric_excess_noise,
            min_flux_over_error=config.min_phot_g_mean_flux_over_error,
            min_number_stars=config.min_number_stars,
            roi_size_arcsec=config.ROI_size,
            roi_ra=config.roi_ra_deg,
            roi_dec=config.roi_dec_deg,
            provider=config.gaia_provider,
            catalog_identity=catalog_identity(config.gaia_provider, catalog_file),
            catalog_file=catalog_file,
        )

    def disk(self) -> SkyCircle:
        """The ROI disk (used as the region by the ``'ROI_disk'`` strategy)."""
        return SkyCircle(float(self.roi_ra), float(self.roi_dec), float(self.disk_radius_arcsec) / 3600.0)

    def describe(self, region: Region | None = None) -> dict[str, Any]:
        """The JSON-able parameters that decide the star set, as hashed by `content_hash`.

        Parameters
        ----------
        region : SkyCircle or SkyPolygon, optional
            The region the stars were selected in. For ``'ROI_disk'`` it is the disk of the
            parameters (pass None or `disk`); for the footprint strategies it is the footprint
            polygon, which is then part of the identity (required).

        Returns
        -------
        dict
            ``version`` (`SELECTION_RULES_VERSION`), ``strategy``, ``region`` (``'ROI_disk'``:
            ``disk_radius_arcsec``; otherwise the polygon's vertices), ``roi`` [ra, dec],
            ``roi_size_arcsec``, ``gmag_min``, ``gmag_max``, ``max_astrometric_excess_noise_sig``,
            ``min_phot_g_mean_flux_over_error`` (None = no bound) and ``catalog``.
        """
        if self.strategy == "ROI_disk":
            if region is not None and region != self.disk():
                raise ValueError(f"an ROI_disk selection's region is its disk {self.disk()}, got {region}")
            region_description: dict[str, Any] = {"disk_radius_arcsec": float(self.disk_radius_arcsec)}
        elif isinstance(region, SkyPolygon):
            region_description = region.describe()
        else:
            raise ValueError(
                f"a {self.strategy} star set depends on its footprint: region must be the "
                f"SkyPolygon the stars are selected in, got {type(region).__name__}"
            )

        def number(value: float | None) -> float | None:
            return None if value is None else float(value)

        return {
            "version": SELECTION_RULES_VERSION,
            "strategy": self.strategy,
            "region": region_description,
            "roi": [float(self.roi_ra), float(self.roi_dec)],
            "roi_size_arcsec": float(self.roi_size_arcsec),
            "gmag_min": number(self.gmag_min),
            "gmag_max": number(self.gmag_max),
            "max_astrometric_excess_noise_sig": number(self.max_excess_noise_sig),
            "min_phot_g_mean_flux_over_error": number(self.min_flux_over_error),
            "catalog": self.catalog_identity,
        }

    def content_hash(self, region: Region | None = None) -> int:
        """Identity of the star set: a positive 63-bit int (fits SQLite INTEGER, PostgreSQL BIGINT).

        The first 8 bytes of the SHA-256 of the canonical JSON (sorted keys, no spaces) of
        `describe`, reduced to [1, 2**63 - 1]. Independent of Python's hash seed, the process and the
        platform; any change of a parameter in `describe` gives another value.

        Parameters
        ----------
        region : SkyCircle or SkyPolygon, optional
            As for `describe`.
        """
        canonical = json.dumps(self.describe(region), sort_keys=True, separators=(",", ":"), allow_nan=False)
        value = int.from_bytes(hashlib.sha256(canonical.encode()).digest()[:8], "big")
        return value % (2**63 - 1) + 1


def region_for_selection(
    selection: StarSelection, common_footprint: Any = None, largest_footprint: Any = None
) -> Region:
    """The region a selection's stars are taken from.

    Parameters
    ----------
    selection : StarSelection
        The selection.
    common_footprint, largest_footprint : optional
        Intersection and union of the frame footprints, in any form `SkyPolygon.from_footprint`
        accepts; needed by ``'common_footprint_stars'`` and ``'stars_per_frame'`` respectively.

    Returns
    -------
    SkyCircle or SkyPolygon
        ``'ROI_disk'``: the ROI disk; ``'common_footprint_stars'``: the common footprint;
        ``'stars_per_frame'``: the largest footprint (each frame then keeps the stars it holds).

    Raises
    ------
    CatalogError
        If the footprint the strategy needs is missing.
    """
    if not isinstance(selection, StarSelection):
        raise ValueError(f"selection must be a StarSelection, got {type(selection).__name__}")
    if selection.strategy == "ROI_disk":
        return selection.disk()
    name, footprint = (
        ("common", common_footprint)
        if selection.strategy == "common_footprint_stars"
        else ("largest", largest_footprint)
    )
    if footprint is None:
        raise CatalogError(
            f"star_selection_strategy {selection.strategy} needs the {name} footprint of the "
            "frames, which is not available (no plate-solved frames, or frames that do not "
            "overlap)"
        )
    return SkyPolygon.from_footprint(footprint)


def load_catalog(
    selection: StarSelection,
    region: Region,
    *,
    retries: int = 3,
    timeout_s: float = 600.0,
    backoff_s: float = 2.0,
) -> Table:
    """The catalogue a selection reads: its local file, or an online query around ``region``.

    Parameters
    ----------
    selection : StarSelection
        Gives the provider and, for ``'file'``, the file.
    region : SkyCircle or SkyPolygon
        The selection region (used by online queries).
    retries, timeout_s, backoff_s
        As for `query_gaia`.

    Raises
    ------
    CatalogError
        If the file changed since the selection was built (its identity would be wrong), cannot be
        read, or the query fails.
    """
    if selection.provider != "file":
        return query_gaia(
            region, selection.provider, retries=retries, timeout_s=timeout_s, backoff_s=backoff_s
        )
    if catalog_identity("file", selection.catalog_file) != selection.catalog_identity:
        raise CatalogError(
            f"catalogue file {selection.catalog_file} changed since the star selection was "
            "built; build it again"
        )
    return read_catalog_file(selection.catalog_file)


# --------------------------------------------------------------------------------------------------
# Selection and naming


def star_names(n: int) -> list[str]:
    """Names of ``n`` stars: 'a' ... 'z', 'aa', 'ab', ... 'az', 'ba', ... 'zz', 'aaa', ...

    (Bijective base 26, lightcurver's naming; star ``i`` is the ``i``-th nearest to the ROI.)
    """
    if isinstance(n, bool) or not isinstance(n, Integral) or n < 0:
        raise ValueError(f"n must be a non-negative integer, got {n!r}")
    names = []
    for index in range(1, int(n) + 1):
        letters = ""
        while index:
            index, rest = divmod(index - 1, 26)
            letters = chr(ord("a") + rest) + letters
        names.append(letters)
    return names


def _bound_text(selection: StarSelection) -> str:
    lo, hi = selection.gmag_min, selection.gmag_max
    if lo is None and hi is None:
        return "finite G"
    if lo is None:
        return f"G <= {hi:g}"
    return f"G >= {lo:g}" if hi is None else f"{lo:g} <= G <= {hi:g}"


def select_stars(catalog: Table, selection: StarSelection, region: Region) -> Table:
    """Reference stars of a normalised catalogue: region, cuts, ROI exclusion, distance order, names.

    A star is kept when it lies in ``region``; has finite G, BP and RP magnitudes (so that every
    reference star has a colour for the zero points) with ``gmag_min <= G <= gmag_max`` (a None
    bound is no bound); ``astrometric_excess_noise_sig < max_excess_noise_sig`` and
    ``phot_g_mean_flux_over_error > min_flux_over_error`` (lightcurver's strict inequalities on the
    same columns; a NaN value fails a cut that is set); and lies farther than ``roi_size_arcsec``
    from the ROI. Stars are sorted by distance to the ROI (ties by source_id, so the order does not
    depend on the catalogue's row order) and named `star_names` in that order.

    Parameters
    ----------
    catalog : astropy.table.Table
        Normalised catalogue (`read_catalog_file`, `query_gaia`, `normalize_catalog`).
    selection : StarSelection
        The cuts and the ROI.
    region : SkyCircle or SkyPolygon
        The selection region, usually `region_for_selection`.

    Returns
    -------
    astropy.table.Table
        `STAR_COLUMNS`: ``name``, ``gaia_id`` (str of source_id), ``ra``, ``dec`` (deg, at
        ``ref_epoch``), ``gmag``, ``rmag`` (Gaia RP), ``bmag`` (Gaia BP), ``pmra``, ``pmdec`` (mas/yr),
        ``ref_epoch`` (Julian year), ``distance_to_roi_arcsec``, then ``source_id``, ``parallax`` (mas)
        and the values the cuts used.

    Raises
    ------
    CatalogError
        If fewer than ``min_number_stars`` stars remain, naming both numbers and how many sources
        passed each cut; or if ``catalog`` lacks the normalised columns.
    """
    if not isinstance(catalog, Table):
        raise ValueError(f"catalog must be an astropy Table, got {type(catalog).__name__}")
    missing = [name for name in CATALOG_COLUMNS if name not in catalog.colnames]
    if missing:
        raise CatalogError(
            f"catalogue lacks the normalised column(s) {', '.join(missing)}: read it with "
            "read_catalog_file or query_gaia"
        )
    if not isinstance(selection, StarSelection):
        raise ValueError(f"selection must be a StarSelection, got {type(selection).__name__}")
    _check_region(region)

    def column(name: str) -> np.ndarray:
        return np.ma.filled(np.ma.asarray(catalog[name]).astype(np.float64), np.nan)

    g, bp, rp = column("phot_g_mean_mag"), column("phot_bp_mean_mag"), column("phot_rp_mean_mag")
    with np.errstate(invalid="ignore"):
        steps = [("in the region", region.contains(column("ra"), column("dec")))]
        magnitude = np.isfinite(g) & np.isfinite(bp) & np.isfinite(rp)
        if selection.gmag_min is not None:
            magnitude &= g >= selection.gmag_min
        if selection.gmag_max is not None:
            magnitude &= g <= selection.gmag_max
        steps.append((f"with {_bound_text(selection)} and BP, RP magnitudes", magnitude))
        if selection.max_excess_noise_sig is not None:
            steps.append(
                (
                    f"with astrometric_excess_noise_sig < {selection.max_excess_noise_sig:g}",
                    column("astrometric_excess_noise_sig") < selection.max_excess_noise_sig,
                )
            )
        if selection.min_flux_over_error is not None:
            steps.append(
                (
                    f"with phot_g_mean_flux_over_error > {selection.min_flux_over_error:g}",
                    column("phot_g_mean_flux_over_error") > selection.min_flux_over_error,
                )
            )
        distance = separation_deg(column("ra"), column("dec"), selection.roi_ra, selection.roi_dec) * 3600.0
        steps.append(
            (
                f"farther than ROI_size {selection.roi_size_arcsec:g} arcsec from the ROI",
                distance > selection.roi_size_arcsec,
            )
        )
    keep = np.ones(len(catalog), dtype=bool)
    funnel = []
    for label, passed in steps:
        keep &= passed
        funnel.append(f"{np.count_nonzero(keep)} {label}")
    n_kept = int(np.count_nonzero(keep))
    if n_kept < selection.min_number_stars:
        raise CatalogError(
            f"only {n_kept} reference star(s) pass the selection, min_number_stars is "
            f"{selection.min_number_stars}: of {len(catalog)} catalogue sources, " + ", then ".join(funnel)
        )

    index = np.flatnonzero(keep)
    source_id = np.asarray(catalog["source_id"], dtype=np.int64)
    index = index[np.lexsort((source_id[index], distance[index]))]
    stars = Table()
    stars["name"] = np.array(star_names(len(index)), dtype=str)
    stars["gaia_id"] = np.array([str(i) for i in source_id[index]], dtype=str)
    for name, catalog_name in (
        ("ra", "ra"),
        ("dec", "dec"),
        ("gmag", "phot_g_mean_mag"),
        ("rmag", "phot_rp_mean_mag"),
        ("bmag", "phot_bp_mean_mag"),
        ("pmra", "pmra"),
        ("pmdec", "pmdec"),
        ("ref_epoch", "ref_epoch"),
    ):
        stars[name] = column(catalog_name)[index]
    stars["distance_to_roi_arcsec"] = distance[index]
    stars["source_id"] = source_id[index]
    for name in (
        "parallax",
        "phot_g_mean_flux_over_error",
        "astrometric_excess_noise",
        "astrometric_excess_noise_sig",
    ):
        stars[name] = column(name)[index]
    return stars


# --------------------------------------------------------------------------------------------------
# Proper motion and frames


def julian_year_to_mjd(epoch: Any) -> np.ndarray:
    """MJD of Julian epochs (e.g. 2016.0 -> 57388.5); TT and TCB differences are ignored (< 1 min)."""
    return _MJD_J2000 + (np.asarray(epoch, dtype=float) - 2000.0) * _DAYS_PER_JULIAN_YEAR


def propagate(
    ra: Any, dec: Any, pmra: Any, pmdec: Any, ref_epoch: Any, mjd: Any
) -> tuple[np.ndarray, np.ndarray]:
    """Positions at date ``mjd`` from catalogue positions and proper motions.

    Space motion at constant velocity perpendicular to the line of sight (parallax and radial
    velocity ignored, as astropy's ``apply_space_motion`` without distances): the unit vector moves
    by ``dt * (pmra * east + pmdec * north)`` and is renormalised. Exact at the poles and across RA 0.

    Parameters
    ----------
    ra, dec : array_like
        Positions at ``ref_epoch`` (deg).
    pmra, pmdec : array_like
        Proper motions (mas/yr; ``pmra`` includes cos Dec). NaN counts as 0 (no motion known).
    ref_epoch : array_like
        Catalogue epoch (Julian year, 2016.0 for Gaia DR3).
    mjd : array_like
        Date (MJD). All arguments broadcast.

    Returns
    -------
    ra, dec : numpy.ndarray
        Positions at ``mjd`` (deg, RA in [0, 360)).
    """
    ra, dec, mjd = (np.asarray(v, dtype=float) for v in (ra, dec, mjd))
    years = (mjd - julian_year_to_mjd(ref_epoch)) / _DAYS_PER_JULIAN_YEAR
    a, d = np.radians(ra), np.radians(dec)
    east = np.stack(np.broadcast_arrays(-np.sin(a), np.cos(a), np.zeros_like(a)), axis=-1)
    north = np.stack([-np.sin(d) * np.cos(a), -np.sin(d) * np.sin(a), np.cos(d)], axis=-1)
    mu_east = np.nan_to_num(np.asarray(pmra, dtype=float)) * _MAS_TO_RAD * years
    mu_north = np.nan_to_num(np.asarray(pmdec, dtype=float)) * _MAS_TO_RAD * years
    moved = unit_vectors(ra, dec) + mu_east[..., None] * east + mu_north[..., None] * north
    return radec(moved)


def stars_in_frame(
    stars: Table, wcs: WCS, image_shape: tuple[int, int], mjd: float, stamp_size: int
) -> Table:
    """The stars whose whole stamp lies inside a frame, with their pixel positions at its date.

    Positions are propagated to ``mjd`` (`propagate`) and mapped through ``wcs``. A stamp of
    ``stamp_size`` pixels is placed on the frame's pixel grid as `lightcurver_ops.cutouts.stamp_origin`
    places it: the star's nearest pixel (halves rounded up) becomes stamp pixel
    ``stamp_size // 2``, so the stamp starts at ``floor(x + 0.5) - stamp_size // 2`` on each axis. All
    ``stamp_size`` pixels must lie in ``image_shape``.

    Parameters
    ----------
    stars : astropy.table.Table
        With ``ra``, ``dec``, ``pmra``, ``pmdec``, ``ref_epoch`` (as `select_stars` gives).
    wcs : astropy.wcs.WCS
        Celestial WCS of the frame (0-based pixels).
    image_shape : tuple of int
        ``(ny, nx)`` of the frame (pixels).
    mjd : float
        Date of the frame (MJD).
    stamp_size : int
        Stamp side (pixels), e.g. the config's ``stamp_size_stars``.

    Returns
    -------
    astropy.table.Table
        The rows of ``stars`` that fit, in their order, plus ``x`` and ``y`` (0-based pixels at ``mjd``).
    """
    missing = [name for name in ("ra", "dec", "pmra", "pmdec", "ref_epoch") if name not in stars.colnames]
    if missing:
        raise ValueError(f"stars lack column(s) {', '.join(missing)}")
    if not isinstance(wcs, WCS) or not wcs.has_celestial:
        raise ValueError("wcs must be an astropy WCS with celestial axes")
    if len(image_shape) != 2 or not all(
        isinstance(n, Integral) and not isinstance(n, bool) and n > 0 for n in image_shape
    ):
        raise ValueError(f"image_shape must be (ny, nx) positive integers, got {image_shape!r}")
    check_positive("mjd", mjd)
    if isinstance(stamp_size, bool) or not isinstance(stamp_size, Integral) or stamp_size < 1:
        raise ValueError(f"stamp_size must be a positive integer (pixels), got {stamp_size!r}")
    ra, dec = propagate(stars["ra"], stars["dec"], stars["pmra"], stars["pmdec"], stars["ref_epoch"], mjd)
    x, y = (np.asarray(v, dtype=float) for v in wcs.celestial.world_to_pixel_values(ra, dec))
    ny, nx = image_shape
    with np.errstate(invalid="ignore"):
        x0, y0 = np.floor(x + 0.5) - stamp_size // 2, np.floor(y + 0.5) - stamp_size // 2
        fits = (x0 >= 0) & (x0 + stamp_size <= nx) & (y0 >= 0) & (y0 + stamp_size <= ny)
    inside = stars[fits]
    inside["x"] = x[fits]
    inside["y"] = y[fits]
    return inside
