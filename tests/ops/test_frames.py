"""Tests of lightcurver_ops.frames on synthetic frames with known sky, PSF and WCS."""

from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np
import pytest
import sep
from astropy.io import fits
from astropy.table import Table
from astropy.wcs import WCS

from lightcurver_ops import frames
from lightcurver_ops._sep import sep_extract
from lightcurver_ops.background import estimate_background
from lightcurver_ops.ephemeris import ephemeris
from lightcurver_ops.errors import FrameError
from lightcurver_ops.seeing import measure_seeing, seeing_histogram_mode
from lightcurver_ops.sources import extract_sources

GAIN = 2.0  # e-/ADU
EXPTIME = 10.0  # s
SKY_RATE = 20.0  # e-/s/pixel, mean over the frame
PSF = {
    "fwhm_major": 4.4,
    "fwhm_minor": 3.6,
    "theta": 0.5,
    "beta": 2.8,
    "wing_fraction": 0.05,
    "wing_sigma": 6.0,
}


# --------------------------------------------------------------------------------------------------
# Synthetic data


def psf_profile(dx, dy, fwhm_major, fwhm_minor, theta, beta, wing_fraction, wing_sigma):
    """Unit-flux PSF: elliptical Moffat plus a round Gaussian wing holding ``wing_fraction`` of the flux."""
    c, s = math.cos(theta), math.sin(theta)
    u, v = c * dx + s * dy, -s * dx + c * dy
    k = 2 * math.sqrt(2 ** (1 / beta) - 1)
    a_major, a_minor = fwhm_major / k, fwhm_minor / k
    moffat = (
        (beta - 1) / (math.pi * a_major * a_minor) * (1 + (u / a_major) ** 2 + (v / a_minor) ** 2) ** -beta
    )
    gauss = np.exp(-(dx**2 + dy**2) / (2 * wing_sigma**2)) / (2 * math.pi * wing_sigma**2)
    return (1 - wing_fraction) * moffat + wing_fraction * gauss


def effective_fwhm(psf: dict) -> float:
    """Truth seeing: 2 sqrt(A_half / pi), A_half the area where the PSF is above half its maximum."""
    step = 0.02
    grid = np.arange(-3 * psf["fwhm_major"], 3 * psf["fwhm_major"] + step / 2, step)
    dx, dy = np.meshgrid(grid, grid)
    values = psf_profile(dx, dy, **psf)
    area = np.count_nonzero(values >= values.max() / 2) * step**2
    return 2 * math.sqrt(area / math.pi)


def synthetic_electrons(
    seed: int,
    shape: tuple[int, int] = (256, 256),
    n_stars: int = 30,
    psf: dict = PSF,
    gradient: float = 0.05,
    flux_range: tuple[float, float] = (5e3, 2e5),
) -> tuple[np.ndarray, np.ndarray]:
    """Frame in electrons over EXPTIME with Poisson noise, and its noiseless sky (electrons).

    Stars are rendered on a 5x sub-pixel grid; the sky has a linear gradient of ``gradient`` per
    image width (and half of it per height) around the mean ``SKY_RATE * EXPTIME``.
    """
    rng = np.random.default_rng(seed)
    ny, nx = shape
    yy, xx = np.mgrid[0:ny, 0:nx]
    sky = SKY_RATE * EXPTIME * (1 + gradient * ((xx / (nx - 1) - 0.5) + 0.5 * (yy / (ny - 1) - 0.5)))
    image = sky.copy()
    sub, radius = 5, 30
    offsets = (np.arange(sub) - (sub - 1) / 2) / sub
    for x, y, flux in zip(
        rng.uniform(12, nx - 13, n_stars),
        rng.uniform(12, ny - 13, n_stars),
        np.exp(rng.uniform(*np.log(flux_range), n_stars)),
        strict=True,
    ):
        x0, x1 = max(round(x) - radius, 0), min(round(x) + radius + 1, nx)
        y0, y1 = max(round(y) - radius, 0), min(round(y) + radius + 1, ny)
        px = np.arange(x0, x1)[None, None, :, None] + offsets[None, None, None, :]
        py = np.arange(y0, y1)[:, None, None, None] + offsets[None, :, None, None]
        image[y0:y1, x0:x1] += flux * psf_profile(px - x, py - y, **psf).mean(axis=(1, 3))
    return rng.poisson(image).astype(np.float64), sky


@pytest.fixture(scope="module")
def truth_fwhm() -> float:
    return effective_fwhm(PSF)


def wcs_header(sip: bool) -> fits.Header:
    """A TAN (optionally TAN-SIP) header with a CD matrix, as a plate solver would write it."""
    header = fits.Header()
    header["CTYPE1"], header["CTYPE2"] = ("RA---TAN-SIP", "DEC--TAN-SIP") if sip else ("RA---TAN", "DEC--TAN")
    header["CRPIX1"], header["CRPIX2"] = 61.3, 48.7
    header["CRVAL1"], header["CRVAL2"] = 150.1, 2.2
    header["CD1_1"], header["CD1_2"] = -8.0e-5, 1.5e-5
    header["CD2_1"], header["CD2_2"] = 1.4e-5, 8.1e-5
    header["RADESYS"] = "ICRS"
    header["DATE-OBS"] = "2021-03-04T05:06:07.5"
    if sip:
        header["A_ORDER"], header["B_ORDER"] = 2, 2
        header["A_2_0"], header["A_0_2"], header["A_1_1"] = 2e-5, -1e-5, 3e-6
        header["B_2_0"], header["B_0_2"], header["B_1_1"] = -2e-6, 1.5e-5, 4e-6
    return header


def write_fits(path: Path, data: np.ndarray, header: fits.Header | None = None) -> Path:
    fits.PrimaryHDU(data=data, header=header).writeto(path)
    return path


# --------------------------------------------------------------------------------------------------
# read_raw_frame


def test_read_raw_frame_merges_headers_and_reads_scaled_data(tmp_path):
    data = np.arange(12 * 10, dtype=np.int16).reshape(12, 10)
    primary = fits.PrimaryHDU(header=fits.Header([("TELESCOP", "T1"), ("OBJECT", "primary")]))
    image = fits.ImageHDU(data=data.copy(), header=fits.Header([("OBJECT", "extension"), ("FILTER", "r")]))
    image.scale("int16", bzero=1000)
    path = tmp_path / "multi.fits"
    fits.HDUList([primary, image]).writeto(path)
    before = (path.read_bytes(), os.stat(path).st_mtime_ns)

    raw = frames.read_raw_frame(path, hdu_data_index=1, hdu_header_indexes=(0, 1))

    assert raw.path == path
    assert raw.data.dtype == np.float64 and raw.data.shape == (12, 10)
    np.testing.assert_array_equal(raw.data, data)
    assert raw.header["TELESCOP"] == "T1" and raw.header["FILTER"] == "r"
    assert raw.header["OBJECT"] == "extension"  # later headers win
    for key in ("XTENSION", "BITPIX", "NAXIS", "NAXIS1", "BZERO", "BSCALE", "PCOUNT"):
        assert key not in raw.header
    assert raw.wcs is None
    assert (path.read_bytes(), os.stat(path).st_mtime_ns) == before  # raw file untouched


@pytest.mark.filterwarnings("ignore::astropy.wcs.FITSFixedWarning")
@pytest.mark.parametrize("sip", [False, True])
@pytest.mark.parametrize(("trim_vertical", "trim_horizontal"), [(0, 0), (7, 11), (13, 0)])
def test_trim_keeps_sky_coordinates_of_every_pixel(tmp_path, sip, trim_vertical, trim_horizontal):
    header = wcs_header(sip)
    path = write_fits(tmp_path / "solved.fits", np.ones((100, 120), dtype=np.float32), header)
    original = WCS(header)

    raw = frames.read_raw_frame(path, trim_vertical=trim_vertical, trim_horizontal=trim_horizontal)

    assert raw.data.shape == (100 - 2 * trim_vertical, 120 - 2 * trim_horizontal)
    x = np.array([0.0, 5.5, 40.0, 80.2, raw.data.shape[1] - 1.0])
    y = np.array([0.0, 70.0, 12.3, 50.0, raw.data.shape[0] - 1.0])
    expected = original.pixel_to_world_values(x + trim_horizontal, y + trim_vertical)
    from_header = WCS(raw.header)  # what a later step reads from the written file
    for wcs in (raw.wcs, from_header):
        got = wcs.pixel_to_world_values(x, y)
        np.testing.assert_allclose(got, expected, rtol=0, atol=1e-9)
        assert (wcs.sip is not None) == sip
    assert raw.header["CRPIX1"] == pytest.approx(61.3 - trim_horizontal)
    assert raw.header["CRPIX2"] == pytest.approx(48.7 - trim_vertical)
    assert "CD1_1" not in raw.header  # old WCS purged, astropy's PC/CDELT form written once
    assert raw.header["DATE-OBS"] == "2021-03-04T05:06:07.5"


def test_trim_without_wcs_and_unreadable_wcs(tmp_path):
    path = write_fits(tmp_path / "plain.fits", np.ones((20, 30)))
    raw = frames.read_raw_frame(path, trim_vertical=2, trim_horizontal=3)
    assert raw.wcs is None and raw.data.shape == (16, 24)

    header = fits.Header([("CTYPE1", "RA---XYZ"), ("CTYPE2", "DEC--XYZ"), ("CRPIX1", 1.0)])
    path = write_fits(tmp_path / "badwcs.fits", np.ones((20, 30)), header)
    raw = frames.read_raw_frame(path)
    assert raw.wcs is None and "CTYPE1" not in raw.header and "CRPIX1" not in raw.header


def test_non_finite_pixels_become_nan(tmp_path):
    data = np.ones((10, 10))
    data[2, 3], data[4, 5] = np.inf, np.nan
    raw = frames.read_raw_frame(write_fits(tmp_path / "nan.fits", data))
    assert np.isnan(raw.data[2, 3]) and np.isnan(raw.data[4, 5]) and np.isfinite(raw.data).sum() == 98


def _not_fits(path: Path) -> dict:
    path.write_text("this is not a FITS file\n" * 200)
    return {}


def _truncated(path: Path) -> dict:
    write_fits(path, np.random.default_rng(0).random((200, 300)).astype(np.float32))
    content = path.read_bytes()
    path.write_bytes(content[: len(content) // 2])
    return {}


def _header_only_truncated(path: Path) -> dict:
    write_fits(path, np.ones((50, 50), dtype=np.float32))
    path.write_bytes(path.read_bytes()[:2000])
    return {}


def _bad_hdu_index(path: Path) -> dict:
    write_fits(path, np.ones((10, 10)))
    return {"hdu_data_index": 3}


def _bad_header_index(path: Path) -> dict:
    write_fits(path, np.ones((10, 10)))
    return {"hdu_header_indexes": (0, 1)}


def _table_hdu(path: Path) -> dict:
    fits.HDUList([fits.PrimaryHDU(), fits.table_to_hdu(Table({"a": [1, 2, 3]}))]).writeto(path)
    return {"hdu_data_index": 1}


def _empty_primary(path: Path) -> dict:
    fits.PrimaryHDU().writeto(path)
    return {}


def _cube(path: Path) -> dict:
    write_fits(path, np.ones((3, 10, 10)))
    return {}


def _all_nan(path: Path) -> dict:
    write_fits(path, np.full((10, 10), np.nan))
    return {}


def _all_zero(path: Path) -> dict:
    write_fits(path, np.zeros((10, 10), dtype=np.int16))
    return {}


def _nan_outside_trim(path: Path) -> dict:
    data = np.full((20, 20), np.nan)
    data[:, 0] = 5.0
    write_fits(path, data)
    return {"trim_horizontal": 1}


def _trim_too_large(path: Path) -> dict:
    write_fits(path, np.ones((10, 40)))
    return {"trim_vertical": 5}


def _missing(path: Path) -> dict:
    return {}


@pytest.mark.parametrize(
    ("make", "reason"),
    [
        (_not_fits, "cannot read FITS"),
        (_truncated, "truncated"),
        (_header_only_truncated, "cannot read FITS"),
        (_bad_hdu_index, "out of range"),
        (_bad_header_index, "out of range"),
        (_table_hdu, "BinTableHDU, not an image"),
        (_empty_primary, "no 2-D image"),
        (_cube, "no 2-D image"),
        (_all_nan, "all NaN"),
        (_all_zero, "all zero"),
        (_nan_outside_trim, "all NaN"),
        (_trim_too_large, "leaves no pixel"),
        (_missing, "does not exist"),
    ],
)
def test_bad_frames_raise_frame_error_naming_the_file(tmp_path, make, reason):
    path = tmp_path / f"bad{make.__name__}.fits"
    kwargs = make(path)
    with pytest.raises(FrameError) as excinfo:
        frames.read_raw_frame(path, **kwargs)
    assert excinfo.value.path == path
    assert path.name in str(excinfo.value)
    assert reason in excinfo.value.reason


@pytest.mark.parametrize(
    "kwargs",
    [{"trim_vertical": -1}, {"hdu_data_index": 1.0}, {"hdu_header_indexes": ()}, {"trim_horizontal": True}],
)
def test_bad_read_arguments_raise_value_error(tmp_path, kwargs):
    path = write_fits(tmp_path / "ok.fits", np.ones((10, 10)))
    with pytest.raises(ValueError):
        frames.read_raw_frame(path, **kwargs)


# --------------------------------------------------------------------------------------------------
# Units, background, sources, seeing


def test_to_electrons_per_second():
    data = np.array([[0.0, 1.0], [10.0, -4.0]], dtype=np.float32)
    np.testing.assert_allclose(frames.to_electrons_per_second(data, 2.5, 10.0), data * 0.25)
    assert frames.to_electrons_per_second(data, 2.5, 10.0).dtype == np.float64


@pytest.mark.parametrize(
    ("gain", "exptime"), [(0.0, 1.0), (1.0, 0.0), (-1.0, 1.0), (np.nan, 1.0), (1.0, np.inf)]
)
def test_to_electrons_per_second_rejects_bad_values(gain, exptime):
    with pytest.raises(ValueError, match=r"gain|exptime"):
        frames.to_electrons_per_second(np.ones((2, 2)), gain, exptime)


@pytest.mark.parametrize("seed", [1, 2, 3])
@pytest.mark.parametrize(("model", "mask_sources"), [("mesh", False), ("mesh", True), ("polynomial", False)])
def test_sky_level_within_one_percent(seed, model, mask_sources):
    electrons, sky = synthetic_electrons(seed)
    image = electrons / EXPTIME
    image[100:110, 30] = np.nan  # a bad column segment must not disturb anything

    background = estimate_background(image, n_boxes=3, mask_sources=mask_sources, model=model)

    true_level = sky.mean() / EXPTIME
    assert background.level == pytest.approx(true_level, rel=0.01)
    assert background.sky.shape == image.shape and np.isfinite(background.sky).all()
    # The map follows the 5% gradient: compare the left and right quarters.
    left, right = background.sky[:, :64].mean(), background.sky[:, -64:].mean()
    assert (right - left) / true_level == pytest.approx(0.05 * 0.75, abs=0.01)
    assert background.rms == pytest.approx(math.sqrt(SKY_RATE * EXPTIME) / EXPTIME, rel=0.1)


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_polynomial_sky_follows_a_curved_sky_closer_than_the_mesh(seed):
    """A sky with 3 % curvature: the degree-2 polynomial follows it to < 1 % of the sky everywhere
    (measured: RMS 0.015-0.033, max 0.05-0.12 e-/s about a common offset of +0.03-0.05 e-/s, the
    unmasked light of the stars' wings); the mesh (RMS ~0.1 e-/s) and a plane (~0.2) do not."""
    electrons, sky = synthetic_electrons(seed)
    ny, nx = electrons.shape
    u, v = np.meshgrid(np.linspace(-0.5, 0.5, nx), np.linspace(-0.5, 0.5, ny))
    curvature = 0.03 * SKY_RATE * (4 * u**2 - 2 * u * v)
    image = electrons / EXPTIME + curvature
    true_sky = sky / EXPTIME + curvature

    def deviations(**options) -> np.ndarray:
        error = estimate_background(image, n_boxes=3, mask_sources=True, **options).sky - true_sky
        return error - error.mean()

    polynomial = deviations(model="polynomial", polynomial_degree=2)
    assert np.abs(polynomial).max() < 0.01 * SKY_RATE
    assert polynomial.std() < 0.05
    assert deviations(model="mesh").std() > 2 * polynomial.std()
    assert deviations(model="polynomial", polynomial_degree=1).std() > 3 * polynomial.std()


def test_estimate_background_rejects_bad_arguments():
    with pytest.raises(ValueError, match="n_boxes"):
        estimate_background(np.ones((10, 10)), n_boxes=0)
    with pytest.raises(ValueError, match="n_boxes"):
        estimate_background(np.ones((10, 10)), n_boxes=11)
    with pytest.raises(ValueError, match="2-D"):
        estimate_background(np.ones(10))
    with pytest.raises(ValueError, match="model must be one of"):
        estimate_background(np.ones((10, 10)), model="spline")
    for degree in (-1, 6, 1.5, True):
        with pytest.raises(ValueError, match="polynomial_degree"):
            estimate_background(np.ones((10, 10)), model="polynomial", polynomial_degree=degree)


def test_polynomial_sky_of_a_nearly_empty_image_is_a_clear_error():
    image = np.full((100, 100), np.nan)
    image[50:52, 10:40] = np.random.default_rng(0).normal(20.0, 1.0, (2, 30))
    with pytest.raises(RuntimeError, match="source-free pixels, too few for 6 coefficients"):
        estimate_background(image, model="polynomial")


@pytest.mark.parametrize("seed", [4, 5])
def test_seeing_and_ellipticity_match_truth(seed, truth_fwhm):
    electrons, _ = synthetic_electrons(seed)
    image = electrons / EXPTIME
    background = estimate_background(image)
    image_sub = image - background.sky
    sources = extract_sources(image_sub, background.rms, EXPTIME)

    seeing = measure_seeing(image_sub, sources, background.rms)

    assert seeing.n_stars >= 2
    assert seeing.fwhm_pixels == pytest.approx(truth_fwhm, rel=0.05)
    assert seeing.ellipticity == pytest.approx(1 - PSF["fwhm_minor"] / PSF["fwhm_major"], abs=0.05)
    # sep's moment FWHM, which lightcurver used, is far off on these Moffat stars.
    assert abs(np.median(sources["FWHM"]) / truth_fwhm - 1) > 0.2


def test_extract_sources_table(truth_fwhm):
    electrons, _ = synthetic_electrons(6)
    image = electrons / EXPTIME
    background = estimate_background(image)
    sources = extract_sources(image - background.sky, background.rms, EXPTIME, threshold=2.0, min_area=20)

    assert 15 <= len(sources) <= 40
    for column in ("x", "y", "a", "b", "theta", "flux", "peak", "flag", "xcentroid", "ycentroid"):
        assert column in sources.colnames
    assert np.all(np.diff(sources["flux"]) <= 0)
    np.testing.assert_allclose(
        sources["FWHM"], 2 * np.sqrt(np.log(2) * (sources["a"] ** 2 + sources["b"] ** 2))
    )
    np.testing.assert_allclose(sources["ellipticity"], 1 - sources["b"] / sources["a"])
    np.testing.assert_array_equal(sources["xcentroid"], sources["x"])


def test_extract_sources_on_empty_sky_and_seeing_of_nothing():
    image = np.random.default_rng(0).normal(0.0, 1.0, (64, 64))
    sources = extract_sources(image, 1.0, EXPTIME, threshold=5.0, min_area=20)
    assert len(sources) == 0 and "FWHM" in sources.colnames
    seeing = measure_seeing(image, sources, 1.0)
    assert math.isnan(seeing.fwhm_pixels) and math.isnan(seeing.ellipticity) and seeing.n_stars == 0


def test_measure_seeing_skips_saturated_stars(truth_fwhm):
    electrons, _ = synthetic_electrons(4)
    image = electrons / EXPTIME
    background = estimate_background(image)
    image_sub = image - background.sky
    sources = extract_sources(image_sub, background.rms, EXPTIME)
    level = 0.3 * float(np.max(sources["peak"]))
    saturated = np.minimum(image_sub, level)  # flat-topped bright stars

    ignoring = measure_seeing(saturated, sources, background.rms)
    skipping = measure_seeing(saturated, sources, background.rms, saturation=level)

    assert 0 < skipping.n_stars < ignoring.n_stars
    assert skipping.fwhm_pixels == pytest.approx(truth_fwhm, rel=0.05)
    nothing = measure_seeing(image_sub, sources, background.rms, saturation=1.0)
    assert nothing.n_stars == 0 and math.isnan(nothing.fwhm_pixels)


def test_seeing_histogram_mode_branches():
    assert math.isnan(seeing_histogram_mode([]))
    assert math.isnan(seeing_histogram_mode([np.nan, np.inf]))
    # 1 to 10 values: the median.
    assert seeing_histogram_mode([3.0]) == 3.0
    assert seeing_histogram_mode([1.0, 2.0, 100.0]) == 2.0
    assert seeing_histogram_mode([2.0] * 5 + [3.0] * 5) == 2.5
    # More than 10, interior peak: the cluster at 4.0 wins over the median (4.2).
    values = [4.0] * 6 + [4.2] * 2 + [7.0] * 5
    assert np.median(values) == pytest.approx(4.2)
    assert seeing_histogram_mode(values) == pytest.approx(4.0)
    # More than 10, peak in the first bin of [1.5, 3 median]: the median.
    assert seeing_histogram_mode([1.6] * 8 + [2.0, 2.5, 3.0, 4.0]) == pytest.approx(1.6)
    # More than 10, peak in the last bin: the median.
    values = [0.5] * 5 + [2.0] + [5.9] * 5
    assert seeing_histogram_mode(values) == pytest.approx(2.0)
    # Non-finite values are ignored.
    assert seeing_histogram_mode([4.0] * 6 + [4.2] * 2 + [7.0] * 5 + [np.nan]) == pytest.approx(4.0)


# --------------------------------------------------------------------------------------------------
# Ephemeris


def test_ephemeris_matches_astropy():
    import astropy.units as u
    from astropy.coordinates import AltAz, EarthLocation, SkyCoord, get_body
    from astropy.time import Time
    from astropy.utils import iers

    latitude, longitude, elevation = -24.6272, -70.4045, 2635.0  # Paranal
    mjd = 59000.1
    with iers.conf.set_temp("auto_download", False), iers.conf.set_temp("auto_max_age", None):
        location = EarthLocation(lat=latitude * u.deg, lon=longitude * u.deg, height=elevation * u.m)
        time = Time(mjd, format="mjd", scale="utc")
        altaz = AltAz(obstime=time, location=location)
        for altitude, azimuth in [(75.0, 30.0), (35.0, 250.0)]:
            target = SkyCoord(alt=altitude * u.deg, az=azimuth * u.deg, frame=altaz).icrs
            result = ephemeris(mjd, target.ra.deg, target.dec.deg, latitude, longitude, elevation)

            # pyephem includes refraction (< 0.03 deg at these altitudes); astropy here does not.
            assert result.altitude == pytest.approx(altitude, abs=0.1)
            assert result.azimuth == pytest.approx(azimuth, abs=0.2)
            sin_h = math.sin(math.radians(result.altitude))
            assert result.airmass == pytest.approx(1 / (sin_h + 0.025 * math.exp(-11 * sin_h)))
            moon = get_body("moon", time, location)
            separation = moon.separation(target.transform_to(moon.frame)).deg  # topocentric
            assert result.degrees_to_moon == pytest.approx(separation, abs=0.5)

        moon_altaz = moon.transform_to(altaz)
        sun = get_body("sun", time, location)
        assert result.moon_altitude == pytest.approx(moon_altaz.alt.deg, abs=0.5)
        assert result.sun_altitude == pytest.approx(sun.transform_to(altaz).alt.deg, abs=0.5)
        elongation = sun.separation(moon).rad
        phase_angle = math.atan2(
            sun.distance.au * math.sin(elongation), moon.distance.au - sun.distance.au * math.cos(elongation)
        )
        assert result.moon_phase == pytest.approx(50 * (1 + math.cos(phase_angle)), abs=2.0)

        below = SkyCoord(alt=-30 * u.deg, az=100 * u.deg, frame=altaz).icrs
        assert ephemeris(mjd, below.ra.deg, below.dec.deg, latitude, longitude, elevation).airmass == -1


def test_ephemeris_rejects_bad_values():
    with pytest.raises(ValueError, match="dec_deg"):
        ephemeris(59000.0, 10.0, 95.0, 0.0, 0.0, 0.0)
    with pytest.raises(ValueError, match="mjd"):
        ephemeris(np.nan, 10.0, 5.0, 0.0, 0.0, 0.0)


# --------------------------------------------------------------------------------------------------
# calibrate_frame and write_calibrated_frame


@pytest.fixture(scope="module")
def raw_frame(tmp_path_factory) -> tuple[frames.RawFrame, np.ndarray]:
    electrons, sky = synthetic_electrons(7, shape=(280, 260))
    header = wcs_header(sip=True)
    path = tmp_path_factory.mktemp("raw") / "frame_001.fits"
    write_fits(path, (electrons / GAIN).astype(np.float32), header)
    trim = 10
    raw = frames.read_raw_frame(path, trim_vertical=trim, trim_horizontal=trim)
    return raw, sky[trim:-trim, trim:-trim]


def test_calibrate_frame(raw_frame, truth_fwhm):
    raw, sky = raw_frame
    true_level = sky.mean() / EXPTIME

    calibrated = frames.calibrate_frame(
        raw, GAIN, EXPTIME, n_boxes=3, mask_sources=True, threshold=2.0, min_area=20
    )
    kept_sky = frames.calibrate_frame(
        raw,
        GAIN,
        EXPTIME,
        n_boxes=3,
        mask_sources=True,
        subtract_background=False,
        threshold=2.0,
        min_area=20,
    )

    assert calibrated.image.dtype == np.float32 and calibrated.image.shape == raw.data.shape
    assert calibrated.header["BUNIT"] == "ELPERSEC"
    assert WCS(calibrated.header).sip is not None
    assert calibrated.sky_level == pytest.approx(true_level, rel=0.01)
    assert abs(np.median(calibrated.image)) < 0.02 * true_level
    assert calibrated.seeing_pixels == pytest.approx(truth_fwhm, rel=0.05)
    assert calibrated.n_sources == len(calibrated.sources) > 10
    # Without subtraction the image is raw e-/s and the statistics are the same (lightcurver bug 16).
    np.testing.assert_allclose(kept_sky.image, raw.data * GAIN / EXPTIME, rtol=1e-6)
    assert kept_sky.sky_level == calibrated.sky_level and kept_sky.sky_rms == calibrated.sky_rms
    assert kept_sky.seeing_pixels == calibrated.seeing_pixels


def test_calibrate_frame_saturation_and_bad_values(raw_frame):
    raw, _ = raw_frame
    options = {"n_boxes": 3, "mask_sources": False, "threshold": 2.0, "min_area": 20}
    saturated = frames.calibrate_frame(
        raw, GAIN, EXPTIME, saturation_adu=float(np.nanmedian(raw.data)), **options
    )
    assert math.isnan(saturated.seeing_pixels) and saturated.n_sources > 10
    for gain, exptime, saturation in [(GAIN, 0.0, None), (0.0, EXPTIME, None), (GAIN, EXPTIME, -5.0)]:
        with pytest.raises(FrameError) as excinfo:
            frames.calibrate_frame(raw, gain, exptime, saturation_adu=saturation, **options)
        assert "frame_001.fits" in str(excinfo.value)


def test_write_calibrated_frame_round_trip(raw_frame, tmp_path):
    raw, _ = raw_frame
    calibrated = frames.calibrate_frame(
        raw, GAIN, EXPTIME, n_boxes=3, mask_sources=False, threshold=2.0, min_area=20
    )
    image_path = tmp_path / "work" / "frames" / "frame_001.fits"
    sources_path = tmp_path / "work" / "frames" / "frame_001_sources.fits"

    for _ in range(2):  # the second write overwrites
        frames.write_calibrated_frame(calibrated, image_path, sources_path)

    with fits.open(image_path) as hdul:
        assert len(hdul) == 1 and hdul[0].data.dtype.kind == "f" and hdul[0].data.dtype.itemsize == 4
        np.testing.assert_array_equal(hdul[0].data, calibrated.image)
        assert hdul[0].header["BUNIT"] == "ELPERSEC"
        np.testing.assert_allclose(
            WCS(hdul[0].header).pixel_to_world_values(10.0, 20.0), raw.wcs.pixel_to_world_values(10.0, 20.0)
        )
    sources = Table.read(sources_path)
    assert len(sources) == calibrated.n_sources
    np.testing.assert_allclose(sources["flux"], calibrated.sources["flux"])
    assert sorted(p.name for p in image_path.parent.iterdir()) == ["frame_001.fits", "frame_001_sources.fits"]


def test_sep_pixel_stack_follows_each_image():
    """sep allocates its whole pixel stack on every extraction: after a large image, a stamp's
    extraction must get a stack of its own size back, and an image above threshold everywhere must
    still fit."""
    rng = np.random.default_rng(3)
    sep_extract(rng.normal(size=(1024, 1024)), thresh=5.0, err=1.0, minarea=5)
    assert sep.get_extract_pixstack() >= 1024 * 1024
    stamp = rng.normal(size=(24, 24))
    stamp[10:14, 10:14] += 50.0
    objects = sep_extract(stamp, thresh=3.0, err=1.0, minarea=10)
    assert len(objects) == 1
    assert sep.get_extract_pixstack() < 4 * 24 * 24
    assert len(sep_extract(np.full((24, 24), 100.0), thresh=3.0, err=1.0, minarea=5)) == 1
