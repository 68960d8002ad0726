"""Catalogue magnitudes of reference stars: Gaia colour transforms and Pan-STARRS lookups."""

import numpy as np
import pytest
from astropy.table import Table

from lightcurver_ops.catalog_magnitudes import gaia_magnitudes, panstarrs_magnitudes
from lightcurver_ops.zeropoints import gaia_band_magnitudes

STARS = [
    {
        "gaia_id": "1",
        "ra": 10.0,
        "dec": 5.0,
        "pmra": 0.0,
        "pmdec": 0.0,
        "ref_epoch": 2016.0,
        "gmag": 17.0,
        "bmag": 17.4,
        "rmag": 16.5,
    },
    {
        "gaia_id": "2",
        "ra": 10.01,
        "dec": 5.0,
        "pmra": 400.0,
        "pmdec": 0.0,
        "ref_epoch": 2016.0,
        "gmag": 18.0,
        "bmag": 18.3,
        "rmag": 17.2,
    },
]


def test_gaia_magnitudes_use_the_colour_polynomial():
    mags = gaia_magnitudes(STARS, "r_sdss")
    expected, _ = gaia_band_magnitudes(np.array([17.0]), np.array([17.4]), np.array([16.5]), "r_sdss")
    assert mags["1"][0] == pytest.approx(float(expected[0]))
    assert mags["1"][1] == pytest.approx(0.03)


def test_panstarrs_from_a_local_table_at_the_panstarrs_epoch():
    # star 2 moves 0.4"/yr east: at 2012.2 it is 1.5" west of its Gaia 2016 position
    shift = 400e-3 * (2016.0 - 2012.18) / 3600 / np.cos(np.radians(5.0))
    table = Table(
        {
            "objID": [111, 222],
            "raMean": [10.0, 10.01 - shift],
            "decMean": [5.0, 5.0],
            "nDetections": [40, 35],
            "rMeanPSFMag": [16.8, 17.9],
            "rMeanPSFMagErr": [0.01, 0.02],
        }
    )
    mags, rows = panstarrs_magnitudes(STARS, "r_panstarrs", table)
    assert mags["1"] == pytest.approx((16.8, 0.01))
    assert mags["2"] == pytest.approx((17.9, 0.02))
    assert [row["original_catalog_id"] for row in rows] == [111, 222]


def test_panstarrs_online_lookups_and_misses_are_cached_rows():
    asked = []

    def query(ra, dec):
        asked.append((ra, dec))
        return None if len(asked) == 2 else {"objID": 5, "rMeanPSFMag": 16.9, "rMeanPSFMagErr": 0.01}

    mags, rows = panstarrs_magnitudes(STARS, "r_panstarrs", query=query)
    assert len(asked) == 2
    assert mags["1"] == pytest.approx((16.9, 0.01))
    assert np.isnan(mags["2"][0]) and rows[1]["original_catalog_id"] is None
    assert panstarrs_magnitudes([], "r_panstarrs", query=query) == ({}, [])
