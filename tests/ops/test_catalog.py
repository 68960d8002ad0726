"""Tests of the reference-star catalogue module against the simulator's truth."""

import csv
import math
import os
import re
import subprocess
import sys
import time
import warnings
from dataclasses import dataclass, replace
from pathlib import Path

import astropy.units as u
import numpy as np
import pytest
import yaml
from astropy.coordinates import SkyCoord
from astropy.io import fits
from astropy.table import Table
from astropy.time import Time
from astropy.wcs import WCS
from erfa import ErfaWarning

from lightcurver_ops.catalog import (
    CATALOG_COLUMNS,
    STAR_COLUMNS,
    VIZIER_COLUMNS,
    SkyCircle,
    SkyPolygon,
    StarSelection,
    catalog_identity,
    gaia_adql,
    load_catalog,
    propagate,
    query_gaia,
    read_catalog_file,
    region_for_selection,
    select_stars,
    star_names,
    stars_in_frame,
)
from lightcurver_ops.config import LightcurverConfig, load_config
from lightcurver_ops.cutouts import stamp_origin
from lightcurver_ops.errors import CatalogError
from lightcurver_ops.simulate import (
    CATALOG_FILE,
    CONFIG_FILE,
    SimulationSpec,
    SimulationTruth,
    simulate_dataset,
)
from lightcurver_ops.star_plots import plot_footprints_with_stars

SPEC = SimulationSpec(nx=512, ny=512, n_frames=3, seed=5)
REPO = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class Sim:
    workdir: Path
    truth: SimulationTruth
    config: LightcurverConfig
    selection: StarSelection
    catalog: Table

    @property
    def catalog_path(self) -> Path:
        return self.workdir / CATALOG_FILE

    def kind(self, source_id: int) -> str:
        return next(s.kind for s in self.truth.sources if s.source_id == source_id)

    def source_of_kind(self, kind: str) -> int:
        return next(s.source_id for s in self.truth.sources if s.kind == kind)


@pytest.fixture(scope="module")
def sim(tmp_path_factory: pytest.TempPathFactory) -> Sim:
    workdir = tmp_path_factory.mktemp("catalog_sim")
    truth = simulate_dataset(workdir, SPEC)
    config = load_config(workdir / CONFIG_FILE)
    selection = StarSelection.from_config(config)
    return Sim(workdir, truth, config, selection, read_catalog_file(workdir / CATALOG_FILE))


def selected(sim: Sim, selection: StarSelection | None = None, catalog: Table | None = None) -> Table:
    selection = selection or sim.selection
    catalog = sim.catalog if catalog is None else catalog
    return select_stars(catalog, selection, region_for_selection(selection))


def assert_same_stars(a: Table, b: Table) -> None:
    assert a.colnames == b.colnames
    for name in a.colnames:
        np.testing.assert_array_equal(a[name], b[name], err_msg=name)


def expected_ids(sim: Sim, gmin: float | None, gmax: float | None, radius_arcsec: float) -> set[int]:
    """Catalogued point sources of the truth in the disk and magnitude range with G S/N > 100 (from the
    file): all but the galaxy have a small excess-noise significance, and only faint stars G > 20 fail
    the S/N cut."""
    with open(sim.catalog_path) as handle:
        rows = list(csv.DictReader(handle))
    snr = {int(row["source_id"]): float(row["phot_g_mean_flux_over_error"]) for row in rows}
    roi = SkyCoord(sim.truth.roi_ra * u.deg, sim.truth.roi_dec * u.deg)
    ids = set()
    for s in sim.truth.sources:
        distance = roi.separation(SkyCoord(s.ra * u.deg, s.dec * u.deg)).arcsec
        in_range = (gmin is None or s.g_mag >= gmin) and (gmax is None or s.g_mag <= gmax)
        if (
            s.kind != "galaxy"
            and in_range
            and snr[s.source_id] > 100.0
            and sim.config.ROI_size < distance <= radius_arcsec
        ):
            ids.add(s.source_id)
    return ids


# --------------------------------------------------------------------------------------------------
# Offline selection


def test_selection_is_the_catalogued_point_sources_within_the_cuts(sim: Sim) -> None:
    stars = selected(sim)
    assert stars.colnames == list(STAR_COLUMNS)
    ids = set(stars["source_id"].tolist())
    assert ids == expected_ids(sim, 16.0, 20.0, sim.config.ROI_disk_radius_arcseconds)
    assert len(stars) >= SPEC.min_usable_stars
    assert {sim.kind(i) for i in ids} <= {"star", "variable"}
    assert np.all((stars["gmag"] >= 16.0) & (stars["gmag"] <= 20.0))
    assert np.all(stars["astrometric_excess_noise_sig"] < 3.0)
    assert np.all(stars["phot_g_mean_flux_over_error"] > 100.0)
    assert np.all(stars["distance_to_roi_arcsec"] > sim.config.ROI_size)
    assert list(stars["gaia_id"]) == [str(i) for i in stars["source_id"]]
    truth = {s.source_id: s for s in sim.truth.sources}
    for row in stars:
        s = truth[int(row["source_id"])]
        assert (row["gmag"], row["bmag"], row["rmag"]) == (s.g_mag, s.bp_mag, s.rp_mag)  # rmag is RP
    # names follow the distance to the ROI
    assert list(stars["name"]) == star_names(len(stars))
    assert np.all(np.diff(stars["distance_to_roi_arcsec"]) >= 0)
    roi = SkyCoord(sim.truth.roi_ra * u.deg, sim.truth.roi_dec * u.deg)
    distance = roi.separation(SkyCoord(stars["ra"] * u.deg, stars["dec"] * u.deg)).arcsec
    np.testing.assert_allclose(stars["distance_to_roi_arcsec"], distance, atol=1e-6)


def test_galaxy_and_saturated_star_are_removed_by_their_cuts(sim: Sim) -> None:
    wide = replace(sim.selection, disk_radius_arcsec=3600.0)  # every source of the field in the region
    galaxy, saturated = sim.source_of_kind("galaxy"), sim.source_of_kind("saturated")
    ids = set(selected(sim, wide)["source_id"].tolist())
    assert galaxy not in ids and saturated not in ids
    assert galaxy in set(selected(sim, replace(wide, max_excess_noise_sig=None))["source_id"].tolist())
    assert saturated in set(selected(sim, replace(wide, gmag_min=None))["source_id"].tolist())


def test_null_magnitude_bounds_mean_no_bound(sim: Sim) -> None:
    radius = 3600.0
    wide = replace(sim.selection, disk_radius_arcsec=radius)
    base = set(selected(sim, wide)["source_id"].tolist())
    for gmin, gmax in ((None, 20.0), (16.0, None), (None, None)):
        stars = selected(sim, replace(wide, gmag_min=gmin, gmag_max=gmax))
        ids = set(stars["source_id"].tolist())
        assert ids == expected_ids(sim, gmin, gmax, radius)
        assert ids > base
    bright = selected(sim, replace(wide, gmag_min=None, gmag_max=20.0))
    faint = selected(sim, replace(wide, gmag_min=16.0, gmag_max=None))
    assert bright["gmag"].min() < 16.0 and faint["gmag"].max() > 20.0


def test_too_few_stars_names_both_numbers_and_the_cuts(sim: Sim) -> None:
    n = len(selected(sim))
    message = rf"only {n} reference star\(s\).*min_number_stars is 500"
    with pytest.raises(CatalogError, match=message) as error:
        selected(sim, replace(sim.selection, min_number_stars=500))
    for cut in (
        "16 <= G <= 20",
        "astrometric_excess_noise_sig < 3",
        "phot_g_mean_flux_over_error > 100",
        "ROI_size 5 arcsec",
    ):
        assert cut in str(error.value)
    with pytest.raises(CatalogError, match=r"only 0 reference star\(s\).*min_number_stars is 6"):
        selected(sim, replace(sim.selection, gmag_min=10.0, gmag_max=11.0))


def test_csv_fits_and_votable_copies_select_the_same_stars(sim: Sim, tmp_path: Path) -> None:
    raw = Table.read(sim.catalog_path, format="ascii.csv")
    reference = selected(sim)
    upper = raw.copy()
    for name in upper.colnames:
        upper.rename_column(name, name.upper())  # column names are matched case-insensitively
    copies = [tmp_path / "cat.fits", tmp_path / "cat.vot", tmp_path / "cat.xml", tmp_path / "cat.fits.gz"]
    upper.write(copies[0])
    raw.write(copies[1], format="votable")
    raw.write(copies[2], format="votable")
    raw.write(copies[3], format="fits")
    for path in copies:
        catalog = read_catalog_file(path)
        assert catalog.colnames == list(CATALOG_COLUMNS) and catalog["source_id"].dtype == np.int64
        assert_same_stars(selected(sim, catalog=catalog), reference)


def test_catalogue_file_errors_name_the_file_and_the_columns(sim: Sim, tmp_path: Path) -> None:
    raw = Table.read(sim.catalog_path, format="ascii.csv")
    path = tmp_path / "partial.csv"
    raw.remove_columns(["phot_bp_mean_mag", "astrometric_excess_noise_sig"])
    raw.write(path)
    with pytest.raises(
        CatalogError,
        match=r"partial\.csv: missing column\(s\) phot_bp_mean_mag, "
        r"astrometric_excess_noise_sig",
    ):
        read_catalog_file(path)
    with pytest.raises(CatalogError, match=r"nowhere\.csv does not exist"):
        read_catalog_file(tmp_path / "nowhere.csv")
    (tmp_path / "broken.fits").write_bytes(b"SIMPLE  = not a fits file")
    with pytest.raises(CatalogError, match=r"broken\.fits: cannot read it as fits"):
        read_catalog_file(tmp_path / "broken.fits")
    lines = sim.catalog_path.read_text().splitlines()
    lines[1] = "1.5e17" + lines[1][lines[1].index(",") :]
    (tmp_path / "float_id.csv").write_text("\n".join(lines))
    with pytest.raises(CatalogError, match="source_id must be an integer column"):
        read_catalog_file(tmp_path / "float_id.csv")


def test_missing_values_and_optional_columns(sim: Sim, tmp_path: Path) -> None:
    raw = Table.read(sim.catalog_path, format="ascii.csv", fast_reader=False)
    raw.remove_columns(["ref_epoch", "parallax", "astrometric_excess_noise"])
    raw = Table(raw, masked=True)
    star = int(np.flatnonzero(raw["source_id"] == int(selected(sim)["source_id"][0]))[0])
    raw["pmra"].mask[star] = True
    raw["phot_bp_mean_mag"].mask[star] = True
    path = tmp_path / "gaps.vot"
    raw.write(path, format="votable")
    catalog = read_catalog_file(path)
    assert catalog["pmra"][star] == 0.0 and np.isnan(catalog["phot_bp_mean_mag"][star])
    assert np.all(catalog["ref_epoch"] == 2016.0) and np.all(np.isnan(catalog["parallax"]))
    stars = selected(sim, catalog=catalog)
    assert int(raw["source_id"][star]) not in set(stars["source_id"].tolist())  # no colour, not a reference
    assert len(stars) == len(selected(sim)) - 1


# --------------------------------------------------------------------------------------------------
# Online catalogue (only the astroquery boundary is replaced)


class FakeJob:
    def __init__(self, table: Table) -> None:
        self.table = table

    def get_results(self) -> Table:
        return self.table


def circle_of(query: str) -> tuple[float, ...]:
    return tuple(float(v) for v in re.search(r"CIRCLE\('ICRS', (\S+), (\S+), (\S+)\)\)", query).groups())


def fake_service(sim: Sim, names: dict[str, str], queries: list[str]):
    """Answer an ADQL cone query from the simulated catalogue as the service would: only the sources in
    the CIRCLE, only the SELECTed columns (named as the service names them), nullable columns masked,
    rows in the service's order (not the file's)."""
    raw = Table.read(sim.catalog_path, format="ascii.csv")
    served = Table({names.get(name, name): raw[name] for name in raw.colnames}, masked=True)

    def answer(query: str) -> FakeJob:
        queries.append(query)
        columns = [c.strip() for c in re.match(r"SELECT (.*) FROM", query).group(1).split(",")]
        ra0, dec0, radius = circle_of(query)
        centre = SkyCoord(ra0 * u.deg, dec0 * u.deg)
        ra, dec = names.get("ra", "ra"), names.get("dec", "dec")
        inside = centre.separation(SkyCoord(served[ra] * u.deg, served[dec] * u.deg)) <= radius * u.deg
        rows = served[inside][columns]
        return FakeJob(rows[np.argsort(-rows[ra])])

    return answer


def online_selection(sim: Sim, provider: str) -> StarSelection:
    return replace(
        sim.selection, provider=provider, catalog_identity=catalog_identity(provider), catalog_file=None
    )


def test_gaia_archive_and_local_file_give_the_same_stars(sim: Sim, monkeypatch: pytest.MonkeyPatch) -> None:
    import astroquery.gaia

    queries: list[str] = []
    monkeypatch.setattr(astroquery.gaia.Gaia, "launch_job_async", fake_service(sim, {}, queries))
    online = online_selection(sim, "gaia")
    region = region_for_selection(online)
    catalog = load_catalog(online, region)
    assert len(queries) == 1 and "FROM gaiadr3.gaia_source WHERE 1=CONTAINS" in queries[0]
    assert " AND " not in queries[0] and "BETWEEN" not in queries[0]  # no server-side cuts
    assert len(catalog) < len(sim.catalog)  # the server answered the cone only
    assert_same_stars(select_stars(catalog, online, region), selected(sim))


def test_vizier_and_local_file_give_the_same_stars(sim: Sim, monkeypatch: pytest.MonkeyPatch) -> None:
    from astroquery.utils.tap.core import TapPlus

    queries: list[str] = []
    answer = fake_service(sim, {gaia: vizier for vizier, gaia in VIZIER_COLUMNS.items()}, queries)
    monkeypatch.setattr(TapPlus, "launch_job", lambda self, query, **kwargs: answer(query))
    wide = replace(online_selection(sim, "vizier"), disk_radius_arcsec=3600.0)
    region = region_for_selection(wide)
    catalog = query_gaia(region, "vizier")
    assert 'FROM "I/355/gaiadr3"' in queries[0] and "POINT('ICRS', RA_ICRS, DE_ICRS)" in queries[0]
    assert np.all(catalog["ref_epoch"] == 2016.0)
    assert_same_stars(
        select_stars(catalog, wide, region), selected(sim, replace(sim.selection, disk_radius_arcsec=3600.0))
    )


def test_network_failures_are_retried_then_reported(sim: Sim, monkeypatch: pytest.MonkeyPatch) -> None:
    import astroquery.gaia

    calls: list[str] = []

    def down(query: str) -> FakeJob:
        calls.append(query)
        raise ConnectionError("network is unreachable")

    monkeypatch.setattr(astroquery.gaia.Gaia, "launch_job_async", down)
    region = sim.selection.disk()
    with pytest.raises(
        CatalogError,
        match=r"gaia query failed after 3 attempt.*ConnectionError: network is "
        r"unreachable",
    ):
        query_gaia(region, "gaia", retries=2, backoff_s=0.0)
    assert len(calls) == 3

    answer = fake_service(sim, {}, [])
    calls.clear()

    def flaky(query: str) -> FakeJob:
        calls.append(query)
        if len(calls) < 3:
            raise TimeoutError("read timed out")
        return answer(query)

    monkeypatch.setattr(astroquery.gaia.Gaia, "launch_job_async", flaky)
    assert len(query_gaia(region, "gaia", retries=2, backoff_s=0.0)) > 0 and len(calls) == 3


def test_a_hanging_service_times_out(monkeypatch: pytest.MonkeyPatch) -> None:
    from astroquery.utils.tap.core import TapPlus

    monkeypatch.setattr(TapPlus, "launch_job", lambda self, query, **kwargs: time.sleep(2.0))
    start = time.monotonic()
    with pytest.raises(CatalogError, match=r"vizier query failed after 2 attempt.*TimeoutError"):
        query_gaia(SkyCircle(10.0, 10.0, 0.1), "vizier", retries=1, timeout_s=0.1, backoff_s=0.0)
    assert time.monotonic() - start < 1.0


def test_adql_covers_polygons_with_a_circle() -> None:
    polygon = SkyPolygon(((359.9, -0.1), (0.1, -0.1), (0.1, 0.1), (359.9, 0.1)))
    query = gaia_adql(polygon, "gaia")
    ra0, dec0, radius = circle_of(query)
    assert min(ra0, 360.0 - ra0) < 1e-9 and abs(dec0) < 1e-9
    assert radius == pytest.approx(math.hypot(0.1, 0.1) + 1.0 / 3600.0, rel=1e-6)
    with pytest.raises(ValueError, match="provider must be 'gaia' or 'vizier'"):
        gaia_adql(polygon, "file")


# --------------------------------------------------------------------------------------------------
# Star-set identity


def base_selection(**changes: object) -> StarSelection:
    values = dict(
        strategy="ROI_disk",
        disk_radius_arcsec=300.0,
        gmag_min=16.0,
        gmag_max=20.0,
        max_excess_noise_sig=3.0,
        min_flux_over_error=100.0,
        min_number_stars=6,
        roi_size_arcsec=3.5,
        roi_ra=42.2031,
        roi_dec=19.22528,
        provider="gaia",
        catalog_identity="gaia:gaiadr3.gaia_source",
    )
    return StarSelection(**{**values, **changes})


def test_hash_is_a_fixed_positive_63_bit_integer() -> None:
    value = base_selection().content_hash()
    assert isinstance(value, int) and 0 < value < 2**63
    assert value == 2020130203618512819  # pinned: a change of this value orphans every stored star set
    assert base_selection().describe()["region"] == {"disk_radius_arcsec": 300.0}


def test_hash_is_the_same_in_other_processes(sim: Sim) -> None:
    code = (
        "from lightcurver_ops.catalog import StarSelection\n"
        "from lightcurver_ops.config import load_config\n"
        f"config = load_config({str(sim.workdir / CONFIG_FILE)!r})\n"
        "print(StarSelection.from_config(config).content_hash())"
    )
    values = {
        subprocess.run(
            [sys.executable, "-c", code],
            cwd=REPO,
            env={**os.environ, "PYTHONHASHSEED": seed},
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        for seed in ("1", "2")
    }
    assert values == {str(sim.selection.content_hash())}


def test_every_selection_parameter_changes_the_hash() -> None:
    variants = [
        base_selection(),
        base_selection(disk_radius_arcsec=301.0),
        base_selection(gmag_min=None),
        base_selection(gmag_min=16.5),
        base_selection(gmag_max=None),
        base_selection(gmag_max=19.5),
        base_selection(max_excess_noise_sig=None),
        base_selection(max_excess_noise_sig=2.0),
        base_selection(min_flux_over_error=None),
        base_selection(min_flux_over_error=50.0),
        base_selection(roi_size_arcsec=4.0),
        base_selection(roi_ra=42.2032),
        base_selection(roi_dec=19.22529),
        base_selection(provider="vizier", catalog_identity=catalog_identity("vizier")),
    ]
    hashes = [s.content_hash() for s in variants]
    assert len(set(hashes)) == len(hashes)
    square = SkyPolygon(((42.1, 19.1), (42.3, 19.1), (42.3, 19.3), (42.1, 19.3)))
    smaller = SkyPolygon(((42.1, 19.1), (42.29, 19.1), (42.29, 19.3), (42.1, 19.3)))
    common = base_selection(strategy="common_footprint_stars")
    per_frame = base_selection(strategy="stars_per_frame")
    footprint_hashes = {
        common.content_hash(square),
        common.content_hash(smaller),
        per_frame.content_hash(square),
    }
    assert len(footprint_hashes | set(hashes)) == len(hashes) + 3


def test_hash_ignores_what_does_not_change_the_stars(sim: Sim, tmp_path: Path) -> None:
    reference = sim.selection.content_hash()
    assert sim.selection.content_hash(region_for_selection(sim.selection)) == reference
    raw = yaml.safe_load((sim.workdir / CONFIG_FILE).read_text())
    moved = tmp_path / "elsewhere" / "gaia.csv"
    moved.parent.mkdir()
    moved.write_bytes(sim.catalog_path.read_bytes())
    for change in (
        {"stamp_size_stars": 30},
        {"psf_n_iter_pixels": 10},
        {"gaia_query_redo": True},
        {"min_number_stars": 3},
        {"stars_to_use_psf": 5},
        {"gaia_catalog_file": str(moved)},
    ):
        path = tmp_path / "config.yaml"
        path.write_text(yaml.safe_dump({**raw, **change}))
        assert StarSelection.from_config(load_config(path)).content_hash() == reference, change
    # the catalogue's content is part of the identity
    moved.write_text(sim.catalog_path.read_text().replace(",2016.0,", ",2016.5,", 1))
    path.write_text(yaml.safe_dump({**raw, "gaia_catalog_file": str(moved)}))
    changed = StarSelection.from_config(load_config(path))
    assert changed.content_hash() != reference
    # ... and a catalogue edited after the selection was built is refused
    moved.write_bytes(sim.catalog_path.read_bytes())
    with pytest.raises(CatalogError, match="changed since the star selection was built"):
        load_catalog(changed, changed.disk())
    # the disk radius does not matter to footprint strategies; their footprint does, and is required
    square = SkyPolygon(((42.1, 19.1), (42.3, 19.1), (42.3, 19.3), (42.1, 19.3)))
    common = base_selection(strategy="common_footprint_stars")
    assert common.content_hash(square) == replace(common, disk_radius_arcsec=10.0).content_hash(square)
    with pytest.raises(ValueError, match="depends on its footprint"):
        common.content_hash()
    with pytest.raises(ValueError, match="region is its disk"):
        base_selection().content_hash(square)


# --------------------------------------------------------------------------------------------------
# Proper motion and frames


def frame_wcs(sim: Sim, index: int) -> WCS:
    return WCS(fits.Header(sim.truth.frames[index].wcs_header))


def test_propagated_high_proper_motion_stars_land_on_the_simulated_pixels(sim: Sim) -> None:
    fast = [s for s in sim.truth.sources if math.hypot(s.pmra, s.pmdec) > 50.0]
    assert len(fast) == 3
    errors, static_errors = [], []
    for index, frame in enumerate(sim.truth.frames):
        for s in fast:
            ra, dec = propagate(s.ra, s.dec, s.pmra, s.pmdec, 2016.0, frame.mjd)
            x, y = frame_wcs(sim, index).world_to_pixel_values(ra, dec)
            errors.append(math.hypot(x - s.x_pixels[index], y - s.y_pixels[index]))
            x, y = frame_wcs(sim, index).world_to_pixel_values(s.ra, s.dec)
            static_errors.append(math.hypot(x - s.x_pixels[index], y - s.y_pixels[index]))
    assert max(errors) < 0.3
    assert min(static_errors) > 1.0  # the test would notice proper motion being ignored


def test_propagation_agrees_with_astropy_space_motion() -> None:
    ra = np.array([42.2, 359.999, 0.001, 120.0, 10.0])
    dec = np.array([19.2, 0.0, -30.0, 89.99, -89.5])
    pmra = np.array([250.0, -300.0, 1000.0, 200.0, -150.0])
    pmdec = np.array([-120.0, 80.0, -400.0, 300.0, 50.0])
    mjd = 60249.2
    moved = propagate(ra, dec, pmra, pmdec, 2016.0, mjd)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ErfaWarning)
        reference = SkyCoord(
            ra=ra * u.deg,
            dec=dec * u.deg,
            pm_ra_cosdec=pmra * u.mas / u.yr,
            pm_dec=pmdec * u.mas / u.yr,
            obstime=Time(2016.0, format="jyear", scale="tcb"),
        ).apply_space_motion(Time(mjd, format="mjd", scale="utc"))
    offset = SkyCoord(moved[0] * u.deg, moved[1] * u.deg).separation(reference).to(u.mas).value
    assert np.all(offset < 0.05)
    shift = SkyCoord(ra * u.deg, dec * u.deg).separation(reference).to(u.mas).value
    assert np.all(shift > 1000.0)


def test_stars_in_frame_keeps_exactly_the_stars_whose_stamp_fits(sim: Sim) -> None:
    wcs, frame = frame_wcs(sim, 1), sim.truth.frames[1]
    field = selected(sim, replace(sim.selection, disk_radius_arcsec=3600.0))
    # synthetic stars placed around every edge, at and around the limits of a 24 or 25 pixel stamp
    offsets = np.array([10.4, 10.6, 11.0, 11.4, 11.5, 11.6, 12.0, 12.5, 13.0])
    px = np.concatenate([offsets, 511.0 - offsets, np.full(2 * len(offsets), 256.0)])
    py = np.concatenate([np.full(2 * len(offsets), 256.0), offsets, 511.0 - offsets])
    ra, dec = wcs.pixel_to_world_values(px, py)
    edge = Table(
        {
            "name": [f"e{i}" for i in range(len(px))],
            "ra": ra,
            "dec": dec,
            "pmra": np.zeros(len(px)),
            "pmdec": np.zeros(len(px)),
            "ref_epoch": np.full(len(px), 2016.0),
        }
    )
    image = np.zeros((SPEC.ny, SPEC.nx))
    for stars in (field, edge):
        for size in (24, 25):
            kept = stars_in_frame(stars, wcs, image.shape, frame.mjd, size)
            assert 0 < len(kept) < len(stars)
            kept_names = set(kept["name"])
            everywhere = stars_in_frame(stars, wcs, (10**6, 10**6), frame.mjd, 1)  # pixel positions of all
            for row in everywhere:
                # the stamp the cutouts module would cut: it fits when the slice is whole
                x0, y0 = stamp_origin(row["x"], row["y"], size)
                fits_in = x0 >= 0 and y0 >= 0 and image[y0 : y0 + size, x0 : x0 + size].shape == (size, size)
                assert fits_in == (row["name"] in kept_names), (row["name"], row["x"], row["y"], size)
    kept = stars_in_frame(field, wcs, image.shape, frame.mjd, 24)
    truth = {s.source_id: s for s in sim.truth.sources}
    for row in kept:
        s = truth[int(row["source_id"])]
        assert math.hypot(row["x"] - s.x_pixels[1], row["y"] - s.y_pixels[1]) < 0.3


# --------------------------------------------------------------------------------------------------
# Regions


def test_regions_are_correct_across_ra_zero() -> None:
    circle = SkyCircle(0.0, 10.0, 0.05)
    assert circle.contains([359.99, 0.01, 0.1, 359.9, 180.0], [10.0] * 5).tolist() == [
        True,
        True,
        False,
        False,
        False,
    ]
    assert SkyCircle(359.995, 10.0, 0.02).contains([0.01, 359.98], [10.0, 10.0]).all()
    polygon = SkyPolygon(((-0.1, -0.1), (0.1, -0.1), (0.1, 0.1), (359.9, 0.1)))
    assert polygon.vertices[0] == (359.9, -0.1)
    ra = [359.99, 0.01, 0.0, 0.2, 359.8, 180.0, 0.0]
    inside = polygon.contains(ra, [0.0, 0.0, 0.09, 0.0, 0.0, 0.0, -0.2])
    assert inside.tolist() == [True, True, True, False, False, False, False]


def test_selection_across_ra_zero_equals_the_same_field_elsewhere(sim: Sim) -> None:
    shifted = sim.catalog.copy()
    shifted["ra"] = (shifted["ra"] - sim.selection.roi_ra) % 360.0  # a rotation about the pole: same sky
    at_zero = replace(sim.selection, roi_ra=0.0)
    assert np.any(shifted["ra"] > 359.0) and np.any(shifted["ra"] < 1.0)
    stars, reference = selected(sim, at_zero, shifted), selected(sim)
    assert list(stars["gaia_id"]) == list(reference["gaia_id"])
    assert list(stars["name"]) == list(reference["name"])
    distance = reference["distance_to_roi_arcsec"]
    np.testing.assert_allclose(stars["distance_to_roi_arcsec"], distance, atol=1e-6)


def test_footprint_strategies_select_inside_the_footprint(sim: Sim) -> None:
    corners = frame_wcs(sim, 0).calc_footprint(axes=(SPEC.nx, SPEC.ny))
    common = replace(sim.selection, strategy="common_footprint_stars")
    for footprint in (
        corners,
        SkyPolygon.from_footprint(corners),
        {"type": "Polygon", "coordinates": [corners.tolist()]},
    ):
        region = region_for_selection(common, common_footprint=footprint)
        assert isinstance(region, SkyPolygon)
        stars = select_stars(sim.catalog, common, region)
        truth = {s.source_id: s for s in sim.truth.sources}
        for source_id in stars["source_id"]:
            s = truth[int(source_id)]
            assert -0.5 <= s.x_pixels[0] <= SPEC.nx - 0.5 and -0.5 <= s.y_pixels[0] <= SPEC.ny - 0.5
        assert len(stars) > len(selected(sim))  # the frame is larger than the ROI disk
    per_frame = replace(sim.selection, strategy="stars_per_frame")
    assert region_for_selection(per_frame, common_footprint=None, largest_footprint=corners) == region
    with pytest.raises(CatalogError, match="needs the common footprint"):
        region_for_selection(common, largest_footprint=corners)
    with pytest.raises(CatalogError, match="needs the largest footprint"):
        region_for_selection(per_frame, common_footprint=corners)


def test_bad_arguments_raise_one_clear_error(sim: Sim) -> None:
    with pytest.raises(ValueError, match="radius_deg must be a finite positive number"):
        SkyCircle(10.0, 10.0, -1.0)
    with pytest.raises(ValueError, match="circle centre Dec must be within"):
        SkyCircle(10.0, 95.0, 1.0)
    with pytest.raises(ValueError, match="at least 3 distinct vertices"):
        SkyPolygon(((0.0, 0.0), (1.0, 0.0), (0.0, 0.0)))
    with pytest.raises(ValueError, match="self-intersecting"):
        SkyPolygon(((0.0, 0.0), (1.0, 1.0), (1.0, 0.0), (0.0, 1.0)))
    with pytest.raises(ValueError, match=r"gmag_min 21\.0 exceeds gmag_max 20\.0"):
        base_selection(gmag_min=21.0)
    with pytest.raises(ValueError, match="min_number_stars must be a positive integer"):
        base_selection(min_number_stars=0)
    with pytest.raises(ValueError, match="catalog_file is required"):
        base_selection(provider="file", catalog_identity="file:sha256:0")
    with pytest.raises(ValueError, match="stamp_size must be a positive integer"):
        stars_in_frame(selected(sim), frame_wcs(sim, 0), (512, 512), 60000.0, 0)
    with pytest.raises(CatalogError, match="lacks the normalised column"):
        select_stars(Table({"ra": [1.0]}), sim.selection, sim.selection.disk())


def test_star_names() -> None:
    assert star_names(3) == ["a", "b", "c"]
    names = star_names(703)
    assert names[25:28] == ["z", "aa", "ab"] and names[51:53] == ["az", "ba"]
    assert names[701:] == ["zz", "aaa"] and len(set(names)) == 703
    assert star_names(0) == []


# --------------------------------------------------------------------------------------------------
# Plot


def test_footprint_plot_is_written(sim: Sim, tmp_path: Path) -> None:
    corners = [frame_wcs(sim, i).calc_footprint(axes=(SPEC.nx, SPEC.ny)) for i in range(SPEC.n_frames)]
    footprints = [SkyPolygon.from_footprint(corners[0]), corners[1].tolist(), corners[2]]
    path = plot_footprints_with_stars(
        footprints,
        selected(sim),
        (sim.truth.roi_ra, sim.truth.roi_dec),
        sim.config.ROI_disk_radius_arcseconds,
        tmp_path / "plots" / "stars.png",
    )
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and path.stat().st_size > 10_000
