"""Absolute zero points: Gaia colour transforms, Pan-STARRS magnitudes and matching, frame zero
points, and the catalogue-photometry cache (on SQLite and on real PostgreSQL)."""

import math

import numpy as np
import pytest
from astropy.table import Table
from sqlalchemy import func, select

from lightcurver_ops.config import GAIA_BANDS
from lightcurver_ops.db.catalog_photometry import (
    cached_magnitudes,
    replace_zeropoint,
    store_magnitudes,
    zeropoints_of_set,
)
from lightcurver_ops.db.engine import create_science_engine, migrate
from lightcurver_ops.db.frames import upsert_frame
from lightcurver_ops.db.schema import absolute_zeropoints, catalog_star_photometry
from lightcurver_ops.errors import CatalogError
from lightcurver_ops.zeropoints import (
    GAIA_TRANSFORMS,
    PANSTARRS_BANDS,
    frame_zeropoint,
    gaia_band_magnitudes,
    match_panstarrs,
    panstarrs_band_magnitude,
    query_panstarrs,
    read_panstarrs_file,
)

# --------------------------------------------------------------------------------------------------
# Gaia colour transforms


def test_every_configurable_gaia_band_has_a_transform():
    assert set(GAIA_TRANSFORMS) == set(GAIA_BANDS)
    for transform in GAIA_TRANSFORMS.values():
        lo, hi = transform.colour_range
        assert lo < hi
        assert transform.nominal_error_mag == 0.03


def test_r_sdss_polynomial_by_hand():
    # BP - RP = 1: G - r = -0.09837 + 0.08592 + 0.1907 - 0.1701 + 0.02263 = 0.03078
    mag, err = gaia_band_magnitudes(15.0, 15.5, 14.5, "r_sdss")
    assert mag == pytest.approx(15.0 - 0.03078, abs=1e-12)
    assert err == 0.03


def test_v_polynomial_by_hand_and_vectorised():
    # BP - RP = 2: G - V = -0.02704 + 0.01424*2 - 0.2156*4 + 0.01426*8 = -0.74688
    g = np.array([16.0, 17.0])
    bp = np.array([17.5, 17.2])
    rp = np.array([15.5, 17.2])
    mag, err = gaia_band_magnitudes(g, bp, rp, "V")
    assert mag.shape == err.shape == (2,)
    assert mag[0] == pytest.approx(16.0 + 0.74688, abs=1e-12)
    assert mag[1] == pytest.approx(17.0 + 0.02704, abs=1e-12)  # BP - RP = 0: only c_0
    np.testing.assert_array_equal(err, [0.03, 0.03])


def test_outside_the_colour_range_or_without_bp_rp_is_nan():
    g = np.array([15.0, 15.0, 15.0, 15.0, 15.0, np.nan])
    rp = np.full(6, 14.0)
    bp = np.array([14.5, 16.0, 16.5, np.nan, 14.0 + 2.0, 15.0])
    # i_sdss holds for 0.5 <= BP-RP <= 2.0 (ends included)
    mag, err = gaia_band_magnitudes(g, bp, rp, "i_sdss")
    valid = [True, True, False, False, True, False]
    np.testing.assert_array_equal(np.isfinite(mag), valid)
    np.testing.assert_array_equal(np.isfinite(err), valid)
    masked_bp = np.ma.masked_array([14.5, 14.8], mask=[True, False])
    mag, _ = gaia_band_magnitudes([15.0, 15.0], masked_bp, [14.0, 14.0], "r_sdss")
    assert math.isnan(mag[0]) and math.isfinite(mag[1])
    mag, _ = gaia_band_magnitudes(15.0, 18.5, 15.0, "r_sdss")  # BP - RP = 3.5 > 3.0
    assert math.isnan(mag)


def test_unknown_gaia_band_is_named():
    with pytest.raises(ValueError, match="'u_sdss'"):
        gaia_band_magnitudes(15.0, 15.5, 14.5, "u_sdss")


# --------------------------------------------------------------------------------------------------
# Pan-STARRS magnitudes


def _ps_row(**values):
    row = {"objID": 1, "raMean": 10.0, "decMean": 5.0, "nDetections": 30}
    for f in "grizy":
        row[f"{f}MeanPSFMag"] = 18.0
        row[f"{f}MeanPSFMagErr"] = 0.02
    return row | values


def test_panstarrs_filter_band_and_missing_values():
    row = _ps_row(rMeanPSFMag=17.25, rMeanPSFMagErr=0.01)
    assert panstarrs_band_magnitude(row, "r_panstarrs") == (17.25, 0.01)
    for missing in (-999.0, 0.0, None, np.nan):
        mag, _ = panstarrs_band_magnitude(_ps_row(zMeanPSFMag=missing), "z_panstarrs")
        assert math.isnan(mag)
    with pytest.raises(ValueError, match="'w_panstarrs'"):
        panstarrs_band_magnitude(row, "w_panstarrs")
    with pytest.raises(CatalogError, match="yMeanPSFMag"):
        panstarrs_band_magnitude({"objID": 1}, "y_panstarrs")


def test_atlas_bands_combine_magnitudes_and_errors_in_quadrature():
    row = _ps_row(gMeanPSFMag=18.0, gMeanPSFMagErr=0.03, rMeanPSFMag=17.0, rMeanPSFMagErr=0.04)
    mag, err = panstarrs_band_magnitude(row, "c_panstarrs")
    assert mag == pytest.approx(0.49 * 18.0 + 0.51 * 17.0)
    assert err == pytest.approx(math.hypot(0.49 * 0.03, 0.51 * 0.04))
    row = _ps_row(rMeanPSFMag=17.0, iMeanPSFMag=16.5, rMeanPSFMagErr=0.02, iMeanPSFMagErr=0.02)
    mag, err = panstarrs_band_magnitude(row, "o_panstarrs")
    assert mag == pytest.approx(0.55 * 17.0 + 0.45 * 16.5)
    assert err == pytest.approx(0.02 * math.hypot(0.55, 0.45))
    mag, err = panstarrs_band_magnitude(_ps_row(iMeanPSFMag=-999.0), "o_panstarrs")
    assert math.isnan(mag) and math.isnan(err)


def test_panstarrs_magnitudes_from_table_columns():
    table = Table([_ps_row(), _ps_row(rMeanPSFMag=-999.0), _ps_row(rMeanPSFMag=16.0)])
    mag, err = panstarrs_band_magnitude(table, "r_panstarrs")
    np.testing.assert_array_equal(mag, [18.0, np.nan, 16.0])
    np.testing.assert_array_equal(err, [0.02, np.nan, 0.02])
    assert "c_panstarrs" in PANSTARRS_BANDS and "r_panstarrs" in PANSTARRS_BANDS


# --------------------------------------------------------------------------------------------------
# Pan-STARRS matching


ARCSEC = 1.0 / 3600.0


def _candidates() -> Table:
    """Around (10, 5): a nearest row with few detections, a well-detected one, and a far one."""
    return Table(
        [
            _ps_row(objID=101, raMean=10.0, decMean=5.0 + 0.2 * ARCSEC, nDetections=3, rMeanPSFMag=15.0),
            _ps_row(objID=102, raMean=10.0, decMean=5.0 + 0.8 * ARCSEC, nDetections=40, rMeanPSFMag=16.0),
            _ps_row(objID=103, raMean=10.0, decMean=5.0 - 1.2 * ARCSEC, nDetections=50, rMeanPSFMag=17.0),
            _ps_row(objID=104, raMean=10.0, decMean=5.0 + 30 * ARCSEC, nDetections=50),
        ]
    )


def test_local_match_keeps_well_detected_rows_then_the_nearest():
    table = _candidates()
    matches = match_panstarrs(table, [10.0, 10.0, 11.0], [5.0, 5.0 + 30 * ARCSEC, 5.0])
    # 101 is nearest but has 3 <= 0.2 * 50 detections; 102 is the nearest of the others
    assert matches[0]["objID"] == 102
    assert matches[1]["objID"] == 104  # a single candidate
    assert matches[2] is None
    assert panstarrs_band_magnitude(matches[0], "r_panstarrs") == (16.0, 0.02)
    assert match_panstarrs(table, [10.0], [5.0], radius_arcsec=0.5)[0]["objID"] == 101


def test_panstarrs_file_round_trip_and_errors(tmp_path):
    table = _candidates()
    for name in ("ps1.fits", "ps1.ecsv", "ps1.csv"):
        table.write(tmp_path / name)
        read = read_panstarrs_file(tmp_path / name)
        assert [m["objID"] for m in match_panstarrs(read, [10.0], [5.0])] == [102]
    with pytest.raises(CatalogError, match=r"missing\.fits"):
        read_panstarrs_file(tmp_path / "missing.fits")
    table.remove_column("iMeanPSFMagErr")
    table.write(tmp_path / "no_i.fits")
    with pytest.raises(CatalogError, match=r"no_i\.fits.*iMeanPSFMagErr"):
        read_panstarrs_file(tmp_path / "no_i.fits")
    with pytest.raises(CatalogError, match="iMeanPSFMagErr"):
        read_panstarrs_file(tmp_path / "no_i.fits", band="o_panstarrs")
    assert len(read_panstarrs_file(tmp_path / "no_i.fits", band="c_panstarrs")) == 4
    (tmp_path / "junk.fits").write_bytes(b"not a table")
    with pytest.raises(CatalogError, match=r"junk\.fits"):
        read_panstarrs_file(tmp_path / "junk.fits")


def test_online_query_uses_mast_dr1_and_the_same_rule(monkeypatch):
    calls = []

    def fake_query_region(coordinates, radius, catalog, data_release):
        calls.append((coordinates, radius, catalog, data_release))
        return _candidates()[:3]

    monkeypatch.setattr("astroquery.mast.Catalogs.query_region", fake_query_region)
    best = query_panstarrs(10.0, 5.0)
    assert best["objID"] == 102
    assert isinstance(best["objID"], int) and isinstance(best["rMeanPSFMag"], float)
    coordinates, radius, catalog, data_release = calls[0]
    assert catalog.lower() == "panstarrs" and data_release == "dr1"
    assert radius.to_value("arcsec") == pytest.approx(1.5)
    assert coordinates.ra.deg == pytest.approx(10.0) and coordinates.dec.deg == pytest.approx(5.0)

    monkeypatch.setattr("astroquery.mast.Catalogs.query_region", lambda *a, **k: _candidates()[:0])
    assert query_panstarrs(10.0, 5.0) is None


def test_online_query_failure_names_the_position(monkeypatch):
    def unreachable(*args, **kwargs):
        raise ConnectionError("MAST unreachable")

    monkeypatch.setattr("astroquery.mast.Catalogs.query_region", unreachable)
    with pytest.raises(CatalogError, match=r"RA 12\.500000 Dec -7\.250000.*MAST unreachable"):
        query_panstarrs(12.5, -7.25)
    with pytest.raises(ValueError, match="dec_deg"):
        query_panstarrs(12.5, 95.0)


# --------------------------------------------------------------------------------------------------
# Frame zero point


def test_frame_zeropoint_recovers_a_known_zeropoint():
    rng = np.random.default_rng(4)
    zeropoint = 25.3
    mags = rng.uniform(14.0, 19.0, 40)
    fluxes = 10.0 ** (-0.4 * (mags - zeropoint)) * (1.0 + rng.normal(0.0, 0.01, 40))
    mags[:3] = np.nan  # no catalogue magnitude
    fluxes[3:6] = [0.0, -5.0, np.nan]  # unusable fluxes
    zp, scatter, n = frame_zeropoint(mags, fluxes)
    assert n == 34
    assert zp == pytest.approx(zeropoint, abs=0.005)
    assert 0.005 < scatter < 0.02


def test_frame_zeropoint_single_star_and_no_star():
    zp, scatter, n = frame_zeropoint([20.0], [100.0])
    assert (zp, n) == (pytest.approx(25.0), 1) and math.isnan(scatter)
    with pytest.raises(ValueError, match="no usable star"):
        frame_zeropoint([np.nan, 18.0], [10.0, -1.0])
    with pytest.raises(ValueError, match="one length"):
        frame_zeropoint([18.0, 19.0], [10.0])


# --------------------------------------------------------------------------------------------------
# Database


@pytest.fixture
def engine(database_url):
    engine = create_science_engine(database_url)
    migrate(engine)
    yield engine
    engine.dispose()


def test_magnitude_cache_round_trip_and_idempotent_restore(engine):
    rows = [
        {"star_gaia_id": 123456789012345678, "mag": 17.5, "mag_err": 0.02, "original_catalog_id": 1001},
        {"star_gaia_id": "2", "mag": np.nan, "mag_err": None, "original_catalog_id": None},  # no match
    ]
    with engine.begin() as connection:
        store_magnitudes(connection, "panstarrs", "r_panstarrs", rows)
    with engine.begin() as connection:
        store_magnitudes(connection, "panstarrs", "r_panstarrs", rows)
        store_magnitudes(
            connection, "panstarrs", "r_panstarrs", [{"star_gaia_id": "2", "mag": 19.0, "mag_err": 0.1}]
        )
        store_magnitudes(
            connection, "panstarrs", "r_panstarrs", [{"star_gaia_id": "2", "mag": None, "mag_err": None}]
        )
    with engine.connect() as connection:
        cached = cached_magnitudes(connection, "panstarrs", "r_panstarrs", [123456789012345678, "2", "3"])
        count = connection.execute(select(func.count()).select_from(catalog_star_photometry)).scalar_one()
        ids = connection.execute(select(catalog_star_photometry.c.original_catalog_id)).scalars().all()
    assert count == 2
    assert set(cached) == {"123456789012345678", "2"}  # "3" was never stored: absent
    assert cached["123456789012345678"] == (17.5, 0.02)
    assert all(math.isnan(v) for v in cached["2"])  # stored without a match: not queried again
    assert set(ids) == {"1001", None}


def test_band_is_part_of_the_cache_key(engine):
    with engine.begin() as connection:
        store_magnitudes(connection, "gaia", "r_sdss", [{"star_gaia_id": "7", "mag": 16.0, "mag_err": 0.03}])
        store_magnitudes(connection, "gaia", "i_sdss", [{"star_gaia_id": "7", "mag": 15.6, "mag_err": 0.03}])
        assert cached_magnitudes(connection, "gaia", "r_sdss", ["7"]) == {"7": (16.0, 0.03)}
        assert cached_magnitudes(connection, "gaia", "i_sdss", ["7"]) == {"7": (15.6, 0.03)}
        assert cached_magnitudes(connection, "gaia", "g_sdss", ["7"]) == {}
        assert cached_magnitudes(connection, "panstarrs", "r_sdss", ["7"]) == {}
    with engine.begin() as connection, pytest.raises(ValueError, match="repeated"):
        store_magnitudes(connection, "gaia", "r_sdss", [{"star_gaia_id": "7"}, {"star_gaia_id": 7}])


def test_cache_lookup_of_many_stars(engine):
    rows = [{"star_gaia_id": str(i), "mag": 10.0 + i / 1000, "mag_err": 0.03} for i in range(1200)]
    with engine.begin() as connection:
        store_magnitudes(connection, "gaia", "V", rows)
        cached = cached_magnitudes(connection, "gaia", "V", range(1300))
    assert len(cached) == 1200 and cached["1199"] == (pytest.approx(11.199), 0.03)


def test_replace_zeropoint_is_idempotent(engine):
    with engine.begin() as connection:
        f1 = upsert_frame(connection, {"partition_key": "f1"})
        f2 = upsert_frame(connection, {"partition_key": "f2"})
        row = {"zeropoint": 25.3, "zeropoint_uncertainty": 0.02, "source_catalog": "gaia"}
        replace_zeropoint(connection, f1, 7, row)
        replace_zeropoint(connection, f1, 7, row)
        replace_zeropoint(
            connection, f2, 7, {**row, "zeropoint": np.float64(25.1), "zeropoint_uncertainty": np.nan}
        )
        replace_zeropoint(connection, f1, 8, {**row, "zeropoint": 24.0})
    with engine.connect() as connection:
        stored = zeropoints_of_set(connection, 7)
        count = connection.execute(select(func.count()).select_from(absolute_zeropoints)).scalar_one()
    assert count == 3
    assert stored[f1] == {"zeropoint": 25.3, "zeropoint_uncertainty": 0.02, "source_catalog": "gaia"}
    assert stored[f2]["zeropoint"] == 25.1 and math.isnan(stored[f2]["zeropoint_uncertainty"])
    with engine.begin() as connection:
        replace_zeropoint(connection, f1, 7, None)
        assert set(zeropoints_of_set(connection, 7)) == {f2}
        assert zeropoints_of_set(connection, 8)[f1]["zeropoint"] == 24.0
        assert zeropoints_of_set(connection, 9) == {}
